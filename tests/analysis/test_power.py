import pytest

from analysis.power import power, required_d_z, simulated_power


def test_required_d_z_matches_normal_approximation() -> None:
    # z_.95 + z_.80 = 1.645 + 0.842; over sqrt(200) ≈ 0.176 (t is a little larger)
    assert required_d_z(200, 0.05, 0.8) == pytest.approx(2.486 / 200**0.5, rel=0.02)


def test_detectable_effects_shrink_with_more_participants() -> None:
    small, large = power(50), power(400)
    assert large.min_pp_above_chance < small.min_pp_above_chance
    assert large.min_pp_between_methods < small.min_pp_between_methods
    assert 2.0 < power(200).min_pp_above_chance < 8.0


@pytest.mark.slow
def test_analytic_power_agrees_with_simulation() -> None:
    plan = power(150)
    observed = simulated_power(plan.min_accuracy_above_chance, 150, n_studies=60, seed=1)
    assert 0.6 <= observed <= 0.95
