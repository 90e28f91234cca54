import pandas as pd
import pytest

from analysis import columns as c
from analysis.outcomes import add_outcomes, outcome_summary, parse_ranks
from analysis.simulation import SimulationConfig, simulate_long_responses


def test_parse_ranks_handles_empty_and_joined() -> None:
    assert parse_ranks("") == ()
    assert parse_ranks("1;3;5") == (1, 3, 5)


def test_tick_all_is_revealed_by_precision_exact_set_and_false_alarms() -> None:
    ticks = simulate_long_responses(SimulationConfig(n_participants=40, tick_all_share=1.0), 1)
    honest = simulate_long_responses(SimulationConfig(n_participants=40), 1)
    tick_summary = outcome_summary(add_outcomes(ticks[~ticks[c.IS_ATTENTION_CHECK]]))
    honest_summary = outcome_summary(add_outcomes(honest[~honest[c.IS_ATTENTION_CHECK]]))
    # the primary outcome is perfect for tick-all …
    assert (tick_summary["any_correct"] == 1.0).all()
    # … but every secondary outcome shows it is not recognition
    assert (tick_summary["precision"] <= 0.21).all()
    assert (tick_summary["exact_set_present"] == 0.0).all()
    assert (tick_summary["false_alarms_per_response"] >= 3.9).all()
    assert (tick_summary["correct_none_absent"].fillna(0) == 0.0).all()
    recognisers = honest_summary["method"] != "naive"  # naive is simulated at chance
    assert (tick_summary["precision"][recognisers] < honest_summary["precision"][recognisers]).all()


def test_add_outcomes_survives_a_csv_round_trip(tmp_path, clean_study) -> None:
    raw = clean_study[list(c.EXPORT_COLUMNS)]
    path = tmp_path / "export.csv"
    raw.to_csv(path, index=False)
    again = add_outcomes(pd.read_csv(path))
    assert again[c.ANY_CORRECT].dtype == bool
    assert again[c.MATCHED_CHANCE].to_numpy() == pytest.approx(
        clean_study[c.MATCHED_CHANCE].to_numpy()
    )
    assert again[c.EXACT_SET].sum() == clean_study[c.EXACT_SET].sum()


def test_correct_none_is_defined_only_when_target_absent(clean_study) -> None:
    present = clean_study[clean_study[c.TARGET_PRESENT]]
    absent = clean_study[~clean_study[c.TARGET_PRESENT] & ~clean_study[c.IS_ATTENTION_CHECK]]
    assert present[c.CORRECT_NONE].isna().all()
    assert (absent[c.CORRECT_NONE] == absent[c.NONE_SELECTED]).all()
