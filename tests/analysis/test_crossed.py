"""The crossed participant × face estimator: a hand-computed case, and its behaviour."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import columns as c
from analysis.chance import chance_tests
from analysis.crossed import (
    accuracy_intervals,
    chance_tests_crossed,
    fit_crossed,
    omnibus_crossed,
    pairwise_crossed,
)
from analysis.estimates import present_responses
from analysis.outcomes import add_outcomes
from analysis.simulation import SimulationConfig, simulate_long_responses


def _frame(rows: list[tuple[str, str, str, int]], chance: float = 0.2) -> pd.DataFrame:
    """Responses as (method, participant, face, correct) with one matched chance."""
    return pd.DataFrame(
        {
            c.METHOD: [r[0] for r in rows],
            c.PARTICIPANT: [r[1] for r in rows],
            c.TARGET_IDENTITY: [r[2] for r in rows],
            c.ANY_CORRECT: [bool(r[3]) for r in rows],
            c.MATCHED_CHANCE: chance,
        }
    )


def test_two_way_variance_matches_the_hand_computed_case() -> None:
    # Participants A, B × faces f1, f2; only B on f1 is wrong: p = 3/4, ψ = (y − p)/4.
    # S_P = 2·(1/8)² = 1/32, S_F = 1/32, S_PF = 3·(1/16)² + (3/16)² = 3/64.
    # V = 2·S_P + 2·S_F − (4/3)·S_PF = 1/16 + 1/16 − 1/16 = 1/16, so SE = 1/4 on t(1).
    data = _frame(
        [("m", "A", "f1", 1), ("m", "A", "f2", 1), ("m", "B", "f1", 0), ("m", "B", "f2", 1)]
    )
    fit = fit_crossed(data)
    assert fit.accuracy[0] == pytest.approx(0.75)
    assert fit.cov[0, 0] == pytest.approx(1 / 16)
    assert fit.cov[1, 1] == pytest.approx(1 / 16)  # a constant chance leaves the variance alone
    (test,) = chance_tests_crossed(fit)
    assert test.difference == pytest.approx(0.55)
    assert test.df == 1
    assert test.t == pytest.approx(0.55 / 0.25)
    assert test.p_greater == pytest.approx(stats.t.sf(2.2, 1))
    row = accuracy_intervals(fit).iloc[0]
    half = stats.t.ppf(0.975, 1) * 0.25 / (0.75 * 0.25)  # logit scale
    assert row["ci_low"] == pytest.approx(1 / (1 + np.exp(-(np.log(3) - half))))


def test_a_face_shared_by_two_methods_is_one_cluster() -> None:
    # Each face is easy or hard for both methods alike: the difference between the methods
    # does not depend on which faces were drawn, so faces add no variance to it.
    rows = []
    for person in "ABCDEFGH":
        for face, easy in (("f1", 1), ("f2", 0), ("f3", 1), ("f4", 0)):
            rows += [("a", person, face, easy), ("b", person, face, easy)]
    rows[0] = ("a", "A", "f1", 0)  # one slip so that the variance is not zero
    fit = fit_crossed(_frame(rows))
    table = pairwise_crossed(fit)
    face_part = fit.one_way["face"]
    grad = np.array([1.0, -1.0, 0.0, 0.0])
    # Faces clustered per method would add both methods' face variance to the difference.
    assert grad @ face_part @ grad < 0.05 * (face_part[0, 0] + face_part[1, 1])
    assert table.loc[0, "df"] == 3  # G = min(8 participants, 4 faces)


def test_fewer_faces_give_wider_intervals_and_fewer_degrees_of_freedom() -> None:
    widths = {}
    for faces in (10, 100):
        cfg = SimulationConfig(identity_sd=0.8, items_per_method=faces, p_target_absent=0.0)
        present = present_responses(add_outcomes(simulate_long_responses(cfg, 3)))
        table = accuracy_intervals(fit_crossed(present)).set_index("method")
        widths[faces] = (table["ci_high"] - table["ci_low"]).loc["eigenfaces"]
        assert (table["df"] == faces - 1).all()
    assert widths[10] > 1.5 * widths[100]


def test_omnibus_sees_different_methods_and_not_equal_ones() -> None:
    cfg = SimulationConfig(items_per_method=60)
    present = present_responses(add_outcomes(simulate_long_responses(cfg, 5)))
    assert omnibus_crossed(fit_crossed(present)).p < 1e-4
    equal = SimulationConfig(items_per_method=60, accuracies=(("a", 0.4), ("b", 0.4), ("c", 0.4)))
    present = present_responses(add_outcomes(simulate_long_responses(equal, 5)))
    result = omnibus_crossed(fit_crossed(present))
    assert result.p > 0.01
    assert (result.df_num, result.df_den) == (2, 59)


@pytest.mark.slow
def test_at_chance_method_with_face_heterogeneity_is_rarely_called_above_chance() -> None:
    # 20 faces, face SD 1.0: the participant-only test treats the faces as fixed and calls a
    # population-at-chance method "above chance" far more often than 5%; the crossed test does not.
    cfg = SimulationConfig(
        accuracies=(("at_chance", 0.2), ("other", 0.4)),
        items_per_method=20,
        identity_sd=1.0,
        p_target_absent=0.0,
        p_none_when_unsure=0.0,
        attention_items=0,
        returned_share=0.0,
    )
    crossed_hits = participant_hits = 0
    studies = 60
    for seed in range(studies):
        present = present_responses(add_outcomes(simulate_long_responses(cfg, 500 + seed)))
        crossed = {t.method: t for t in chance_tests_crossed(fit_crossed(present))}
        people = {t.method: t for t in chance_tests(present)}
        crossed_hits += crossed["at_chance"].p_greater < 0.05
        participant_hits += people["at_chance"].p_greater < 0.05
    assert crossed_hits / studies <= 0.12  # 5% expected; 0.12 leaves room for 60 studies
    assert participant_hits > 2 * crossed_hits
