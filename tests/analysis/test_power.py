import numpy as np
import pytest
from scipy import stats

from analysis.power import planning_lines, power, simulated_power, t_test_power, variance_parts


def test_t_test_power_matches_the_normal_approximation_with_many_degrees_of_freedom() -> None:
    # z_.95 + z_.80 = 1.645 + 0.842: an effect of 2.486 SE is detected with power ≈ 0.80
    assert t_test_power(2.486, 1.0, 10_000, 0.05) == pytest.approx(0.80, abs=0.005)
    assert t_test_power(0.0, 1.0, 50, 0.05) == pytest.approx(0.05)
    assert t_test_power(0.0, 1.0, 50, 0.05, two_sided=True) == pytest.approx(0.05)


def test_detectable_effects_shrink_with_more_participants_and_more_faces() -> None:
    small, large = power(50), power(400)
    assert large.min_pp_above_chance < small.min_pp_above_chance
    assert large.min_pp_between_methods < small.min_pp_between_methods
    assert power(200, faces_per_method=100).min_pp_above_chance < (
        power(200, faces_per_method=20).min_pp_above_chance
    )
    assert 2.0 < power(200).min_pp_above_chance < 8.0


def test_few_faces_are_the_bottleneck_and_more_participants_barely_help() -> None:
    few = [power(n, faces_per_method=8) for n in (100, 1000)]
    assert all(r.faces_bottleneck for r in few)
    assert few[1].min_pp_above_chance > 0.8 * few[0].min_pp_above_chance
    assert few[0].df == 7
    assert not power(100, faces_per_method=200).faces_bottleneck


def test_variance_parts_agree_with_the_variance_over_simulated_faces() -> None:
    # Faces only: one question each from infinitely many people ⇒ Var = σ²_F / F + residual.
    parts = variance_parts(0.5, 10_000, 5, 20, participant_sd=0.0, face_sd=0.6)
    p_face = stats.norm(0, 0.6).rvs(size=200_000, random_state=1)
    expit = 1 / (1 + np.exp(-p_face))
    assert parts.faces == pytest.approx(expit.var() / 20, rel=0.05)
    assert parts.participants == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_analytic_power_agrees_with_simulation() -> None:
    plan = power(150, faces_per_method=30)
    observed = simulated_power(
        plan.min_accuracy_above_chance, 150, faces_per_method=30, n_studies=60, seed=1
    )
    assert 0.6 <= observed <= 0.95


def test_planning_lines_warn_when_faces_are_the_bottleneck() -> None:
    lines, warn = planning_lines(n_participants=200, faces_per_method=8)
    assert warn
    assert "200 participants and 8 faces per method" in lines[0]
    assert lines[-1].startswith("WARNING: faces are the bottleneck")
    lines, warn = planning_lines(n_participants=100, faces_per_method=200)
    assert not warn
    assert not any(line.startswith("WARNING") for line in lines)
