import numpy as np
import pytest

from analysis.comparisons import omnibus_wald, pairwise_contrasts
from analysis.estimates import fit_gee, present_responses
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


def test_pairwise_contrasts_cover_six_pairs_with_holm_adjustment(clean_study) -> None:
    fit = fit_gee(present_responses(clean_study))
    table = pairwise_contrasts(fit)
    assert len(table) == 6
    assert (table["p_holm"] >= table["p"] - 1e-15).all()
    assert table["p_holm"].min() == pytest.approx(min(1.0, 6 * table["p"].min()))
    row = table[(table["method_a"] == "eigenfaces") & (table["method_b"] == "naive")].iloc[0]
    assert row["odds_ratio"] > 1
    assert row["or_low"] > 1
    assert row["diff_low_pp"] < row["diff_pp"] < row["diff_high_pp"]
    p = fit.probability()
    assert row["diff_pp"] == pytest.approx(100 * (p[0] - p[1]))


def test_omnibus_detects_differences_and_not_equal_methods(clean_study) -> None:
    assert omnibus_wald(fit_gee(present_responses(clean_study))).p < 1e-6
    same = SimulationConfig(accuracies=tuple((m, 0.4) for m in ("a", "b", "c", "d")))
    df = add_outcomes(simulate_long_responses(same, seed=9))
    test = omnibus_wald(fit_gee(present_responses(df)))
    assert test.df == 3
    assert test.p > 0.01
    assert np.isfinite(test.chi2)
