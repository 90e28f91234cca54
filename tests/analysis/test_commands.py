"""The analysis management commands: analyze_study, simulate_responses, power_analysis."""

import io
import json
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from analysis.models import AnalysisRun
from survey.models import Participant, Study
from tests.factories import study_with_match_sets

pytestmark = pytest.mark.django_db


def run(*args: object) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_analyze_study_reports_on_a_simulated_pilot(tmp_path, settings) -> None:
    settings.VAR_DIR = tmp_path
    study = study_with_match_sets(status=Study.Status.DRAFT, slug="pilot")
    out = run("simulate_responses", "pilot", "--participants", "40", "--careless", "0.05")
    assert "[##############################] 40/40" in out
    assert "Added 40 simulated participants" in out
    assert "2 failed attention checks" in out

    out = run("analyze_study", "pilot", "--resamples", "199", "--no-sensitivity")
    (folder,) = (tmp_path / "reports").glob("pilot-*")
    for name in ("report.md", "report.html", "summary.json", "config.json", "responses_long.csv"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "figures").glob("*.png"))) == 4
    assert len(list((folder / "figures").glob("*.svg"))) == 4
    assert str(folder / "report.html") in out
    assert "not pre-registered" in out
    assert "Participants: 40 in the export, 38 analysed" in out
    assert "failed_attention       2" in out
    for method in ("eigenfaces", "nbnet", "naive", "vec2face"):
        assert f"  {method} " in out
    assert "chance 1/K = 20.0%" in out
    run_row = AnalysisRun.objects.get(study=study)
    assert run_row.n_participants == 38
    assert run_row.config["sensitivity"] is False
    assert run_row.config["n_resamples"] == 199
    assert json.loads((folder / "config.json").read_text())["n_resamples"] == 199


def test_analyze_study_writes_to_out_and_flags_a_deviation(tmp_path) -> None:
    study = study_with_match_sets(is_demo=True, slug="demo-x", analysis_plan={"alpha": 0.05})
    study.analysis_plan_sha256 = "0" * 64  # as if frozen with another plan
    study.save()
    run("simulate_responses", "demo-x", "--participants", "5", "--seed", "3")
    out = run("analyze_study", "demo-x", "--out", str(tmp_path / "r"), "--resamples", "99")
    assert (tmp_path / "r" / "report.html").is_file()
    assert "DEVIATION" in out
    assert "0" * 64 in (tmp_path / "r" / "report.md").read_text()


def test_analyze_study_unknown_slug_is_a_command_error() -> None:
    study_with_match_sets(slug="known")
    with pytest.raises(CommandError, match=r"No study with slug 'nope'.*known"):
        call_command("analyze_study", "nope")


def test_analyze_study_without_responses_is_a_command_error(tmp_path) -> None:
    study_with_match_sets(slug="empty")
    with pytest.raises(CommandError, match="no responses"):
        call_command("analyze_study", "empty", "--out", str(tmp_path))


def test_simulate_responses_refuses_an_open_study_unless_forced() -> None:
    study = study_with_match_sets(slug="real")
    with pytest.raises(CommandError, match=r"not a demo.*--force"):
        call_command("simulate_responses", "real", "--participants", "2")
    assert not Participant.objects.filter(study=study).exists()
    out = run("simulate_responses", "real", "--participants", "2", "--force", "--verbosity", "0")
    assert "Added 2 simulated participants" in out


@pytest.mark.parametrize(
    ("accuracy", "message"),
    [("eigenfaces=1.5", "must be in"), ("fisher=0.5", "unknown method"), ("nbnet", "METHOD=")],
)
def test_simulate_responses_rejects_bad_accuracies(accuracy: str, message: str) -> None:
    study_with_match_sets(status=Study.Status.DRAFT, slug="pilot")
    with pytest.raises(CommandError, match=message):
        call_command("simulate_responses", "pilot", "--participants", "1", "--accuracy", accuracy)


def test_simulate_responses_needs_an_accuracy_for_every_method() -> None:
    study_with_match_sets(status=Study.Status.DRAFT, slug="pilot")
    with pytest.raises(CommandError, match="No accuracy given for method"):
        call_command(
            "simulate_responses", "pilot", "--participants", "1", "--accuracy", "nbnet=chance"
        )


def test_power_analysis_prints_participants_by_faces_tables() -> None:
    out = run(
        "power_analysis", "--participants", "100", "200", "--faces", "10", "100", "--alpha", "0.01"
    )
    lines = out.splitlines()
    assert "alpha 0.01" in lines[0]
    assert lines[2].split() == ["N", "|", "10", "100"]
    rows = [line.replace("*", " ").split() for line in lines[4:6]]
    assert [row[0] for row in rows] == ["100", "200"]
    (few_100, many_100), (few_200, many_200) = ((float(r[2]), float(r[3])) for r in rows)
    assert 0 < many_200 < many_100 < few_100 < 30  # more participants and faces: smaller effects
    # With 10 faces per method, doubling participants barely helps: faces are the bottleneck.
    assert few_100 - few_200 < many_100 - many_200
    assert "*" in lines[4]
    assert "*" in lines[5]


def test_power_analysis_rejects_tiny_samples() -> None:
    with pytest.raises(CommandError, match="at least 3"):
        call_command("power_analysis", "--participants", "2")


@pytest.mark.slow
def test_report_for_about_4000_responses_from_the_database_is_complete(tmp_path, capsys) -> None:
    # The time is printed, not asserted: benchmarks/analysis_coverage.py measures it.
    study_with_match_sets(per_method=10, status=Study.Status.DRAFT, slug="big")
    started = time.perf_counter()
    run(
        "simulate_responses",
        "big",
        "--participants",
        "200",
        "--careless",
        "0.03",
        "--verbosity",
        "0",
    )
    simulated = time.perf_counter() - started
    started = time.perf_counter()
    run("analyze_study", "big", "--out", str(tmp_path))
    seconds = time.perf_counter() - started
    analysis_run = AnalysisRun.objects.get()
    with capsys.disabled():
        sys.stdout.write(
            f"\n{analysis_run.n_responses} responses from 200 participants: simulated into the "
            f"database in {simulated:.1f} s; analyze_study end to end {seconds:.1f} s\n"
        )
    assert analysis_run.n_responses >= 4000
    assert analysis_run.n_participants >= 190  # the careless 3 % are excluded, not the rest
    for name in ("report.md", "report.html", "summary.json", "responses_long.csv"):
        assert (analysis_run.folder / name).is_file()
