import pytest

from analysis import columns as c
from analysis.confidence import (
    calibration_table,
    confident_shares,
    ordinal_confidence,
    summarise_auroc,
    type2_auroc,
)
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


def _data(clean_study):
    return clean_study[~clean_study[c.IS_ATTENTION_CHECK]]


def test_confident_share_is_rating_above_one_with_intervals(clean_study) -> None:
    data = _data(clean_study)
    table = confident_shares(data, n_resamples=299).set_index("method")
    for method, sub in data.groupby(c.METHOD):
        assert table.loc[method, "confident"] == pytest.approx((sub[c.CONFIDENCE] > 1).mean())
        assert table.loc[method, "bootstrap_low"] < table.loc[method, "confident"]
        assert table.loc[method, "confident"] < table.loc[method, "bootstrap_high"]
    assert (table["confident"] + table["not_confident"]).to_numpy() == pytest.approx(1.0)


def test_ordinal_model_finds_correct_answers_more_confident(clean_study) -> None:
    fit = ordinal_confidence(_data(clean_study))
    correct = fit.coefficients.set_index("term").loc["correct"]
    assert correct["coef"] > 0
    assert correct["p"] < 0.001
    assert list(fit.thresholds) == sorted(fit.thresholds)
    assert fit.n_clusters == 200


def test_calibration_rises_and_auroc_exceeds_half_when_confidence_tracks_correctness(
    clean_study,
) -> None:
    table = calibration_table(_data(clean_study))
    overall = table[table["method"] == "all"].set_index("confidence")["accuracy"]
    assert overall.loc[5] > overall.loc[1]
    assert (
        table.groupby("method")["n"].sum().loc["all"] == _data(clean_study)[c.TARGET_PRESENT].sum()
    )
    summary = summarise_auroc(type2_auroc(_data(clean_study)))
    assert summary.mean > 0.53
    assert summary.p < 0.01


def test_auroc_is_near_half_when_confidence_ignores_correctness() -> None:
    df = add_outcomes(simulate_long_responses(SimulationConfig(confidence_slope=0.0), seed=6))
    summary = summarise_auroc(type2_auroc(df[~df[c.IS_ATTENTION_CHECK]]))
    assert summary.ci_low < 0.5 < summary.ci_high or abs(summary.mean - 0.5) < 0.03
