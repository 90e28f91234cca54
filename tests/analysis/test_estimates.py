import numpy as np
import pytest

from analysis import columns as c
from analysis.estimates import (
    cluster_bootstrap_interval,
    fit_gee,
    method_accuracy,
    present_responses,
)
from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


def _analysed(seed: int, config: SimulationConfig | None = None):
    raw = simulate_long_responses(config or SimulationConfig(), seed)
    data = apply_exclusions(add_outcomes(raw), ExclusionConfig()).data
    return data, raw.attrs["truth"]


def test_estimates_recover_known_accuracies_within_two_pp_on_average() -> None:
    errors = {"pooled": [], "gee": [], "bootstrap_mid": []}
    for seed in (21, 22, 23):
        data, truth = _analysed(seed)
        table = method_accuracy(data, n_resamples=499, seed=seed).set_index("method")
        for method, true_value in truth["marginal"].items():
            row = table.loc[method]
            errors["pooled"].append(row["accuracy"] - true_value)
            errors["gee"].append(row["gee_estimate"] - true_value)
            errors["bootstrap_mid"].append(
                (row["bootstrap_low"] + row["bootstrap_high"]) / 2 - true_value
            )
    for name, errs in errors.items():
        assert abs(np.mean(errs)) < 0.02, name  # no systematic bias
        assert np.mean(np.abs(errs)) < 0.03, name  # and close on average


def test_intervals_are_ordered_and_cluster_intervals_wider_than_wilson(clean_study) -> None:
    data = clean_study[~clean_study[c.IS_ATTENTION_CHECK]]
    table = method_accuracy(data, n_resamples=499)
    for row in table.to_dict("records"):
        for kind in ("wilson", "bootstrap", "gee", "ci"):
            assert row[f"{kind}_low"] < row["accuracy"] < row[f"{kind}_high"], kind
    clustered = table["gee_high"] - table["gee_low"]
    wilson = table["wilson_high"] - table["wilson_low"]
    recognisers = table["method"] != "naive"  # participant heterogeneity only there
    assert (clustered[recognisers] > wilson[recognisers]).all()


def test_bootstrap_of_constant_data_is_degenerate_not_an_error() -> None:
    assert cluster_bootstrap_interval(np.zeros(10), np.full(10, 5.0)) == (0.0, 0.0)


def test_gee_estimate_equals_pooled_proportion_in_balanced_data(clean_study) -> None:
    present = present_responses(clean_study)
    fit = fit_gee(present)
    pooled = present.groupby(c.METHOD)[c.ANY_CORRECT].mean()
    assert fit.probability() == pytest.approx(pooled.loc[list(fit.methods)].to_numpy(), abs=0.01)
    assert fit.n_clusters == present[c.PARTICIPANT].nunique()


def test_default_interval_is_wider_than_gee_when_faces_vary() -> None:
    cfg = SimulationConfig(identity_sd=1.2, items_per_method=20)
    data, _ = _analysed(4, cfg)
    table = method_accuracy(data, n_resamples=199).set_index("method")
    row = table.loc["eigenfaces"]
    assert row["ci_high"] - row["ci_low"] > row["gee_high"] - row["gee_low"]
    assert row["n_faces"] <= 20
    assert row["df"] == min(row["n_faces"], row["n_participants"]) - 1


@pytest.mark.slow
def test_gee_interval_coverage_over_simulated_studies() -> None:
    covered, total = 0, 0
    for seed in range(40):
        data, truth = _analysed(1000 + seed)
        fit = fit_gee(present_responses(data))
        low, high = fit.interval()
        for j, method in enumerate(fit.methods):
            covered += low[j] <= truth["given_items"][method] <= high[j]
            total += 1
    assert 0.88 <= covered / total <= 0.995
