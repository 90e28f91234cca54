from analysis.estimates import present_responses
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses
from analysis.variability import random_effect_sds


def test_random_effect_sds_are_recovered_roughly() -> None:
    cfg = SimulationConfig(
        accuracies=(("a", 0.5), ("b", 0.35)), participant_sd=1.0, identity_sd=0.6
    )
    df = present_responses(add_outcomes(simulate_long_responses(cfg, seed=2)))
    v = random_effect_sds(df)
    assert 0.6 < v.participant_sd < 1.4
    assert 0.3 < v.identity_sd < 1.0
    assert v.fixed_effects["a"] > v.fixed_effects["b"]
    assert v.n_identities == 50
