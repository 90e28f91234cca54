"""The recognizer observers of the survey's bots (reconstruction.studies.observers).

They are registered with the survey's observer registry by the reconstruction app, and load
torch and dlib only when one is created; then 200 bots with the dlib-resnet observer take a
demo study built from real LFW photos, and `analyze_study`'s per-method intervals must
contain the observer's expected accuracy.
"""

import json
import sys
import time

import pandas as pd
import pytest
from django.core.management import CommandError

from analysis.services import study_analyze
from reconstruction.recognizers.registry import RECOGNIZERS
from reconstruction.studies.demo import demo_study_create
from reconstruction.studies.observers import RECOGNIZER_OBSERVERS, RecognizerObserver
from survey.bots import (
    DEFAULT_OBSERVER,
    BotError,
    ObserverParams,
    PilotRun,
    observer_create,
    observer_expected_accuracy,
    observer_names,
)
from survey.models import pseudonymise
from tests.factories import study_with_match_sets
from tests.survey.helpers import simulate


def test_every_recognizer_is_an_observer_and_the_default_is_one():
    assert set(RECOGNIZER_OBSERVERS) == set(RECOGNIZERS)
    assert observer_names() == ["random", *sorted(RECOGNIZERS)]
    assert DEFAULT_OBSERVER in RECOGNIZERS


def test_a_recognizer_observer_is_created_through_the_survey_registry():
    params = ObserverParams(temperature=0.05)
    observer = observer_create(name="dlib-resnet", params=params)
    assert isinstance(observer, RecognizerObserver)
    assert (observer.name, observer.params) == ("dlib-resnet", params)
    assert (observer.images_embedded, observer.images_without_face) == (0, 0)


@pytest.mark.parametrize("missing", ["torch", "dlib"])
def test_without_the_ml_extra_a_recognizer_observer_says_what_to_install(monkeypatch, missing):
    # A None entry makes `import` fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, "reconstruction.recognizers.registry", raising=False)
    with pytest.raises(BotError, match=r"'faceres' observer .* pip install '\.\[ml\]'"):
        observer_create(name="faceres")
    assert observer_create(name="random").name == "random"


@pytest.mark.django_db(transaction=True)
def test_simulate_participants_without_torch_refuses_a_recognizer_observer(monkeypatch, tmp_path):
    study_with_match_sets(per_method=5, slug="pilot", is_demo=True)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "reconstruction.recognizers.registry", raising=False)
    with pytest.raises(CommandError, match=r"'dlib-resnet' observer .* the ml extra"):
        simulate("pilot", tmp_path / "x.json", n=1, observer="dlib-resnet")


# --- slow: dlib-resnet observer, analyze_study recovers its accuracy -----------------------


@pytest.mark.slow
@pytest.mark.facedata
@pytest.mark.django_db(transaction=True)
def test_200_dlib_observer_bots_and_analysis_recovers_the_observer_accuracy(face_data, tmp_path):
    pytest.importorskip("dlib")
    study = demo_study_create(faces_root=face_data / "lfw", slug="pilot", per_method=6, seed=8)
    out = tmp_path / "run.json"
    started = time.perf_counter()
    text = simulate(
        "pilot",
        out,
        n=200,
        observer="dlib-resnet",
        careless=0.1,
        seed=11,
        concurrency=4,
        images="new",
    )
    bots_seconds = time.perf_counter() - started
    run = PilotRun.from_dict(json.loads(out.read_text())["run"])
    careless = {r.pid for r in run.results if r.careless}
    assert len(careless) == 20
    assert run.count("completed") == 180, text
    assert run.count("ended") == 20
    # each image embedded once per run, not once per bot
    assert run.images_embedded <= study.match_sets.count() * (study.k + 1)

    analysis = study_analyze(
        study=study,
        out_dir=tmp_path / "report",
        overrides={"n_resamples": 499, "variability": False, "figures": False},
    )
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    steps = {s["rule"]: s for s in summary["exclusions"]}
    assert steps["failed_attention"]["participants_removed"] == 20
    removed_by_attention = set(
        pd.read_csv(tmp_path / "report" / "responses_long.csv").query(
            "participant_status == 'failed_attention'"
        )["participant"]
    )
    assert removed_by_attention == {pseudonymise(pid) for pid in careless}

    long = pd.read_csv(tmp_path / "report" / "responses_long.csv")
    analysed = set(long.loc[long["analysed"], "participant"])
    expected = {
        row.method: row
        for row in observer_expected_accuracy(study=study, run=run, pseudonyms=analysed)
    }
    rows = {row["method"]: row for row in analysis.summary["accuracy"]}
    assert set(rows) == set(expected) == set(study.methods)
    for method, row in rows.items():
        e = expected[method].expected
        assert row["n_responses"] == expected[method].n_responses
        assert row["accuracy"] == pytest.approx(expected[method].observed)
        # The truth within the 95% intervals widened to 3.5 standard errors (99.95%): four
        # methods' 95% intervals (two each, strongly correlated) miss it together in up to one
        # run in five, and the bots' thread timing changes the data from run to run.
        # The observer's expected accuracy is given these faces, so the participant-only
        # ("conditional on these faces") intervals are the ones whose target it is.
        for interval in ("bootstrap", "gee"):
            low, high = (
                row["conditional"][f"{interval}_low"],
                row["conditional"][f"{interval}_high"],
            )
            assert low <= row["accuracy"] <= high, (method, interval, row)
            se = (high - low) / (2 * 1.96)
            assert abs(e - row["accuracy"]) <= 3.5 * se, (method, interval, e, row)
        # the observer is far above chance on real photos, and not perfect
        assert 0.4 < e < 0.98
    shown = [(m, round(r.expected, 3)) for m, r in expected.items()]
    print(f"bots {bots_seconds:.0f} s; expected accuracy {shown}")  # noqa: T201
