"""Analysis services against the database: the frame, the plan, the report run, pilot data."""

import json

import pandas as pd
import pytest

from analysis import columns as c
from analysis.models import AnalysisRun
from analysis.services import (
    AnalysisError,
    analysis_config_for,
    analysis_plan_read,
    responses_simulate,
    study_analyze,
    study_responses_frame,
)
from survey.exports import LONG_COLUMNS, responses_long
from survey.models import Participant, Study
from survey.services import study_set_status
from tests.factories import study_with_match_sets

pytestmark = pytest.mark.django_db

# Report settings for tests that check bookkeeping, not statistics.
QUICK = {"n_resamples": 99, "sensitivity": False, "variability": False, "figures": False}


def draft_study(**fields: object) -> Study:
    """A draft study with 5 match sets per method (the pilot's starting point)."""
    return study_with_match_sets(status=Study.Status.DRAFT, **fields)


@pytest.fixture
def piloted() -> Study:
    """A draft study with 20 simulated participants (one in ten careless)."""
    study = draft_study()
    responses_simulate(study=study, participants=20, careless_share=0.1, seed=1)
    return study


def test_frame_has_the_export_rows_in_analysis_types(piloted: Study) -> None:
    rows = list(responses_long(piloted))
    frame = study_responses_frame(study=piloted)
    assert list(frame.columns) == LONG_COLUMNS
    assert len(frame) == len(rows)
    assert frame[c.IS_ATTENTION_CHECK].dtype == bool
    assert frame[c.CONFIDENCE].dtype == "Int64"
    assert isinstance(frame[c.ANSWERED_AT].dtype, pd.DatetimeTZDtype)
    for row, (_, typed) in zip(rows[:30], frame.head(30).iterrows(), strict=True):
        assert typed[c.PARTICIPANT] == row["participant"]
        assert typed[c.SELECTED_RANKS] == row["selected_ranks"]
        assert typed["candidate_order"] == row["candidate_order"]
        assert typed["selected_photos"] == row["selected_photos"]
        assert bool(typed[c.ANY_CORRECT]) == row["any_correct"]
        assert typed[c.ANSWERED_AT].isoformat() == row["answered_at"]


def test_empty_study_gives_an_empty_frame_with_the_columns() -> None:
    frame = study_responses_frame(study=draft_study())
    assert frame.empty
    assert list(frame.columns) == LONG_COLUMNS


def test_simulation_runs_participants_through_the_flow(piloted: Study) -> None:
    sims = Participant.objects.filter(study=piloted, prolific_pid__startswith="SIM")
    assert sims.count() == 20
    assert sims.filter(status=Participant.Status.FAILED_ATTENTION).count() == 2
    assert sims.filter(status=Participant.Status.COMPLETED).count() == 18
    assert piloted.status == Study.Status.DRAFT
    piloted.refresh_from_db()
    assert piloted.status == Study.Status.DRAFT  # not opened, so no plan was frozen
    assert not piloted.analysis_plan_sha256
    frame = study_responses_frame(study=piloted)
    done = frame[frame[c.PARTICIPANT_STATUS] == c.STATUS_COMPLETED]
    assert done.groupby(c.PARTICIPANT).size().eq(piloted.question_count).all()
    totals = done.groupby(c.PARTICIPANT)[c.PARTICIPANT_TOTAL_S].first()
    assert totals.between(120, 1200).all()  # a realistic clock, not milliseconds


def test_second_simulation_adds_new_participants(piloted: Study) -> None:
    responses_simulate(study=piloted, participants=3, seed=2)
    assert Participant.objects.filter(study=piloted).count() == 23
    assert Participant.objects.filter(prolific_pid="SIM000023").exists()


def test_simulation_recovers_stated_accuracies_roughly() -> None:
    study = draft_study(attention_checks=0)
    accuracies = {"eigenfaces": 0.8, "nbnet": 0.5, "naive": None, "vec2face": 0.3}
    responses_simulate(study=study, participants=25, accuracies=accuracies, seed=3)
    frame = study_responses_frame(study=study)
    acc = frame.groupby(c.METHOD)[c.ANY_CORRECT].mean()
    assert acc["eigenfaces"] > acc["nbnet"] > acc["vec2face"] > 0.1
    assert acc["naive"] == pytest.approx(0.2, abs=0.1)


def test_simulation_refuses_an_open_study_that_is_not_a_demo() -> None:
    study = study_with_match_sets()
    with pytest.raises(AnalysisError, match="--force"):
        responses_simulate(study=study, participants=2)
    assert not Participant.objects.filter(study=study).exists()
    result = responses_simulate(study=study, participants=2, force=True)
    assert result.participants == 2


def test_simulation_accepts_an_open_demo_study() -> None:
    study = study_with_match_sets(is_demo=True)
    assert responses_simulate(study=study, participants=2).completed == 2


def test_plan_keys_map_onto_the_config() -> None:
    plan = {
        "alpha": 0.01,
        "planned_n": 200,
        "primary": "any_correct",
        "exclusions": {"fast_fraction": 0.25, "exclude_same_confidence": False, "foo": 1},
        "n_resamples": 499,
        "hypotheses": ["eigenfaces above chance"],
        "bogus": True,
    }
    reading = analysis_plan_read(plan=plan, attention_failures_allowed=1)
    assert reading.config.confidence_level == pytest.approx(0.99)
    assert reading.config.n_resamples == 499
    assert reading.config.exclusions.fast_fraction == 0.25
    assert reading.config.exclusions.exclude_same_confidence is False
    assert reading.config.exclusions.max_attention_failures == 2
    assert reading.planned_n == 200
    assert reading.unknown == ("bogus", "exclusions.foo")
    assert reading.recorded == {"hypotheses": ["eigenfaces above chance"]}


@pytest.mark.parametrize(
    "plan",
    [
        {"alpha": 0.7},
        {"alpha": "0.05"},
        {"primary": "exact_set"},
        {"planned_n": 0},
        {"exclusions": {"max_attention_failures": True}},
        {"exclusions": []},
    ],
)
def test_invalid_plan_values_are_refused(plan: dict) -> None:
    with pytest.raises(AnalysisError, match="analysis plan"):
        analysis_plan_read(plan=plan)


def test_config_defaults_follow_the_study_attention_rule() -> None:
    study = draft_study(attention_failures_allowed=2)
    config = analysis_config_for(study=study)
    assert config.confidence_level == 0.95
    assert config.exclusions.max_attention_failures == 3


def test_analyze_writes_the_report_and_records_the_run(piloted: Study, tmp_path) -> None:
    piloted.analysis_plan = {"alpha": 0.05, "planned_n": 20, "oops": 1}
    piloted.save()
    run = study_analyze(study=piloted, out_dir=tmp_path, overrides={"n_resamples": 199})
    for name in ("report.md", "report.html", "summary.json", "config.json", "responses_long.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert list((tmp_path / "figures").glob("*.png"))
    assert AnalysisRun.objects.get() == run
    assert run.n_participants == 18  # the 2 careless participants failed their checks
    assert run.summary["exclusions"][1]["rule"] == "failed_attention"
    assert {row["method"] for row in run.summary["accuracy"]} == set(c.METHODS)
    assert run.frozen_plan_sha256 == ""
    assert not run.plan_deviates
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["preregistration"]["unknown_keys"] == ["oops"]
    assert summary["candidate_positions"]["randomised"]
    md = (tmp_path / "report.md").read_text()
    assert "NOT PRE-REGISTERED" in md
    assert "UNKNOWN: ignored" in md
    assert "Design check: candidate positions" in md


def test_report_prints_the_frozen_hash_and_flags_a_deviation(tmp_path) -> None:
    study = draft_study(is_demo=True)
    study.analysis_plan = {"alpha": 0.05, "planned_n": 30}
    study.save()
    study = study_set_status(study=study, status=Study.Status.OPEN)
    responses_simulate(study=study, participants=6, seed=4)
    first = study_analyze(study=study, out_dir=tmp_path / "a", overrides=QUICK)
    assert not first.plan_deviates
    assert first.frozen_plan_sha256 == study.analysis_plan_sha256 == first.plan_sha256
    assert study.analysis_plan_sha256 in (tmp_path / "a" / "report.md").read_text()

    study.analysis_plan = {"alpha": 0.1, "planned_n": 30}
    study.save()
    second = study_analyze(study=study, out_dir=tmp_path / "b", overrides=QUICK)
    assert second.plan_deviates
    assert second.plan_sha256 != second.frozen_plan_sha256
    md = (tmp_path / "b" / "report.md").read_text()
    assert "DEVIATION FROM THE PRE-REGISTERED PLAN" in md
    assert study.analysis_plan_sha256 in md
    assert "alpha: 0.05 → 0.1" in md
    assert "DEVIATION" in (tmp_path / "b" / "report.html").read_text()


def test_analyze_refuses_a_study_without_responses(tmp_path) -> None:
    with pytest.raises(AnalysisError, match="no responses"):
        study_analyze(study=draft_study(), out_dir=tmp_path)


def test_report_counts_who_never_reached_a_question(piloted: Study, tmp_path) -> None:
    status = Participant.Status
    for n, state in enumerate(
        [status.NO_CONSENT, status.NO_CONSENT, status.RETURNED, status.TIMED_OUT, status.ACTIVE]
    ):
        Participant.objects.create(
            study=piloted,
            prolific_pid=f"NQ{n}",
            pseudonym=f"nq{n}",
            session_id=f"S{n}",
            status=state,
        )
    run = study_analyze(study=piloted, out_dir=tmp_path, overrides=QUICK)
    assert run.summary["arrivals"] == {
        "entered": 25,
        "declined_consent": 2,
        "left_before_questions": 2,
        "in_progress_before_questions": 1,
        "reached_questions": 20,
    }
    md = (tmp_path / "report.md").read_text()
    assert "| declined consent | 2 |" in md
    assert "| left before the first question (returned or timed out) | 2 |" in md


def test_report_says_how_the_match_sets_were_ranked(piloted: Study, tmp_path) -> None:
    sets = list(piloted.match_sets.all())
    for n, match_set in enumerate(sets):
        match_set.provenance = {"match_sets": "image"} if n else {}
        match_set.save()
    run = study_analyze(study=piloted, out_dir=tmp_path / "mixed", overrides=QUICK)
    assert "image-level top-K of the second recognizer" in run.summary["match_sets"]
    assert f"({len(sets) - 1} match sets)" in run.summary["match_sets"]
    assert "'Not recorded'" in run.summary["match_sets"]
    piloted.match_sets.update(provenance={"match_sets": "identity"})
    run = study_analyze(study=piloted, out_dir=tmp_path / "identity", overrides=QUICK)
    text = (tmp_path / "identity" / "report.md").read_text()
    assert "Match sets: identity-level top-K" in text
    assert "match sets)" not in run.summary["match_sets"]
