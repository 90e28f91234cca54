import json

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
