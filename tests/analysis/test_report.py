import json

import pytest

from analysis.report import AnalysisConfig, build_report
from analysis.simulation import SimulationConfig, simulate_long_responses


def test_build_report_writes_every_artifact_and_consistent_numbers(tmp_path) -> None:
    df = simulate_long_responses(SimulationConfig.messy(n_participants=80), seed=3)
    summary = build_report(df, AnalysisConfig(n_resamples=199), tmp_path)
    for name in ("report.md", "report.html", "responses_long.csv", "summary.json", "config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    for png, svg in summary["figures"].values():
        assert (tmp_path / png).exists()
        assert (tmp_path / svg).exists()
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored == summary
    assert len(summary["accuracy"]) == 4
    assert len(summary["contrasts"]) == 6
    assert summary["exclusions"][0]["participants_left"] == 80
    assert (
        summary["sensitivity"]["accuracy"][0]["n_participants"]
        >= (summary["accuracy"][0]["n_participants"])
    )
    assert json.loads((tmp_path / "config.json").read_text())["n_resamples"] == 199
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 4
    md = (tmp_path / "report.md").read_text()
    assert "t(" in md
    assert "Holm" in md
    assert "Table III" in md


def test_report_states_its_population_and_warns_about_few_faces(tmp_path) -> None:
    cfg = SimulationConfig.messy(n_participants=60, items_per_method=12, speeder_share=0.05)
    df = simulate_long_responses(cfg, seed=4)
    config = AnalysisConfig(n_resamples=99, sensitivity=False, variability=False, figures=False)
    summary = build_report(df, config, tmp_path, arrivals={"entered": 70, "declined_consent": 4})
    md = (tmp_path / "report.md").read_text()
    assert "refer to new participants recruited like these, looking at new faces" in md
    assert "WARNING: few faces per method" in md
    assert "Conditional on these faces" in md
    assert "Secondary, not a test of accuracy above chance: Wilcoxon" in md
    assert "| declined consent | 4 |" in md
    assert summary["speeders"]["participants_mostly_fast"] >= 3  # the simulated speeders
    assert "Speed flags" in md
    for row, test in zip(summary["accuracy"], summary["chance_tests"], strict=True):
        # One estimator per sentence: the gap to chance is the pooled accuracy − pooled chance.
        assert test["accuracy"] == row["accuracy"]
        assert test["difference"] == pytest.approx(row["accuracy"] - row["matched_chance"])
        assert row["ci_low"] < row["accuracy"] < row["ci_high"]
        assert row["n_faces"] <= 12
    assert summary["power_at_this_n"]["faces_bottleneck"] in (True, False)
