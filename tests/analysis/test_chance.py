import numpy as np
import pytest

from analysis import columns as c
from analysis.chance import chance_tests, flat_chance, matched_chance, wilcoxon_symmetry
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_matched_chance_agrees_with_monte_carlo(s: int, m: int) -> None:
    rng = np.random.default_rng(100 * s + m)
    k, draws = 5, 200_000
    picks = np.argsort(rng.random((draws, k)), axis=1)[:, :s]  # s distinct random candidates
    hit = (picks < m).any(axis=1).mean()  # candidates 0..m-1 are the true ones
    assert matched_chance(k, m, s) == pytest.approx(hit, abs=0.004)


def test_matched_chance_edge_cases() -> None:
    assert matched_chance(5, 1, 0) == 0.0
    assert matched_chance(5, 1, 5) == pytest.approx(1.0)
    assert matched_chance(5, 0, 3) == pytest.approx(0.0)
    assert matched_chance(5, 1, 1) == pytest.approx(flat_chance(5)) == pytest.approx(0.2)


def test_pure_random_guessers_come_out_at_matched_chance() -> None:
    cfg = SimulationConfig(n_participants=400, random_guesser_share=1.0, guesser_max_picks=4)
    df = add_outcomes(simulate_long_responses(cfg, seed=3))
    df = df[~df[c.IS_ATTENTION_CHECK]]
    assert df[c.N_SELECTED].nunique() == 4  # guessers picked 1..4 candidates
    for test in chance_tests(df):
        assert abs(test.difference) < 0.03
        assert test.p_greater > 0.001
    # the flat 1/K baseline would wrongly call multi-pick guessing "above chance"
    present = df[df[c.TARGET_PRESENT]]
    assert present[c.ANY_CORRECT].mean() > 0.4


def test_tick_all_participants_have_matched_chance_one_and_no_excess() -> None:
    cfg = SimulationConfig(n_participants=30, tick_all_share=1.0)
    df = add_outcomes(simulate_long_responses(cfg, seed=4))
    present = df[df[c.TARGET_PRESENT] & ~df[c.IS_ATTENTION_CHECK]]
    assert present[c.ANY_CORRECT].all()
    assert present[c.MATCHED_CHANCE].to_numpy() == pytest.approx(1.0)
    for test in chance_tests(df[~df[c.IS_ATTENTION_CHECK]]):
        assert test.difference == pytest.approx(0.0, abs=1e-12)


def test_method_at_chance_is_not_flagged_and_good_method_is(clean_study) -> None:
    tests = {t.method: t for t in chance_tests(clean_study[~clean_study[c.IS_ATTENTION_CHECK]])}
    assert tests["naive"].p_greater > 0.01
    assert tests["eigenfaces"].p_greater < 1e-6
    assert tests["eigenfaces"].ci_low > 0


def test_wilcoxon_symmetry_is_a_separate_secondary_table(clean_study) -> None:
    table = wilcoxon_symmetry(clean_study[~clean_study[c.IS_ATTENTION_CHECK]]).set_index("method")
    assert table.loc["eigenfaces", "p_greater"] < 1e-6
    assert set(table.columns) == {"n_participants", "w", "p_greater"}
    assert not hasattr(chance_tests(clean_study)[0], "wilcoxon_p_greater")
