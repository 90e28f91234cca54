import numpy as np
import pytest

from analysis import columns as c
from analysis.simulation import (
    QUAD_NODES,
    QUAD_WEIGHTS,
    SimulationConfig,
    logit_intercept,
    simulate_long_responses,
)


def test_simulation_is_seeded_and_has_export_columns() -> None:
    cfg = SimulationConfig(n_participants=20)
    a, b = simulate_long_responses(cfg, 7), simulate_long_responses(cfg, 7)
    assert list(a.columns) == list(c.EXPORT_COLUMNS)
    assert a.equals(b)
    assert not a.equals(simulate_long_responses(cfg, 8))


def test_every_participant_answers_five_questions_per_method_when_completed() -> None:
    df = simulate_long_responses(SimulationConfig(n_participants=50, returned_share=0.0), 2)
    done = df[(df[c.PARTICIPANT_STATUS] == c.STATUS_COMPLETED) & ~df[c.IS_ATTENTION_CHECK]]
    counts = done.groupby([c.PARTICIPANT, c.METHOD]).size()
    assert (counts == 5).all()
    assert done[c.PARTICIPANT_TOTAL_S].notna().all()


def test_inattentive_participants_fail_attention_and_stop() -> None:
    df = simulate_long_responses(SimulationConfig(n_participants=100, inattentive_share=0.3), 3)
    failed = df[df[c.PARTICIPANT_STATUS] == c.STATUS_FAILED_ATTENTION]
    assert failed[c.PARTICIPANT].nunique() > 5
    assert failed[c.PARTICIPANT_TOTAL_S].isna().all()
    last = failed.sort_values(c.POSITION).groupby(c.PARTICIPANT).tail(1)
    assert last[c.IS_ATTENTION_CHECK].all()  # the session ends at the second failure


def test_logit_intercept_gives_the_stated_population_average() -> None:
    b = logit_intercept(0.4, 0.9)
    mean = np.sum(QUAD_WEIGHTS / (1 + np.exp(-(b + 0.9 * QUAD_NODES))))
    assert mean == pytest.approx(0.4, abs=1e-9)
    assert b < np.log(0.4 / 0.6)  # heterogeneity pulls the conditional intercept outward
