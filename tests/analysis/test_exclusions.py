import pandas as pd
import pytest

from analysis import columns as c
from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.outcomes import add_outcomes


def _row(pid: str, pos: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        c.PARTICIPANT: pid,
        c.POSITION: pos,
        c.MATCH_SET: f"m{pos}",
        c.METHOD: "nbnet",
        c.IS_ATTENTION_CHECK: False,
        c.ATTENTION_PASSED: pd.NA,
        c.CONFIDENCE: 1 + pos % 5,
        c.ANSWERED_AT: f"2024-01-01T10:{pos:02d}:00+00:00",
        c.PARTICIPANT_STATUS: c.STATUS_COMPLETED,
        c.PARTICIPANT_TOTAL_S: 600.0,
        c.ANY_CORRECT: False,
    }
    base.update(kw)
    return base


def _toy() -> pd.DataFrame:
    rows = []
    for pid in ("ok1", "ok2", "ok3"):
        rows += [_row(pid, p) for p in range(1, 7)]
        rows.append(_row(pid, 7, **{c.IS_ATTENTION_CHECK: True, c.ATTENTION_PASSED: True}))
    rows.append(_row("ok1", 8, **{c.MATCH_SET: "m1"}))  # duplicate answer to m1
    for p in (1, 2):  # two failed attention checks
        rows.append(_row("att", p, **{c.IS_ATTENTION_CHECK: True, c.ATTENTION_PASSED: False}))
    rows += [_row("att", p) for p in (3, 4)]
    rows += [_row("ret", p, **{c.PARTICIPANT_STATUS: c.STATUS_RETURNED}) for p in (1, 2)]
    rows += [_row("fast", p, **{c.PARTICIPANT_TOTAL_S: 100.0}) for p in range(1, 7)]
    rows += [_row("flat", p, **{c.CONFIDENCE: 3, c.ANY_CORRECT: True}) for p in range(1, 7)]
    df = pd.DataFrame(rows)
    df[c.ATTENTION_PASSED] = df[c.ATTENTION_PASSED].astype("boolean")
    return df


def test_exclusions_are_counted_step_by_step() -> None:
    result = apply_exclusions(_toy(), ExclusionConfig())
    steps = result.steps_table().set_index("rule")
    assert list(steps.index) == [
        "start",
        "duplicates",
        "failed_attention",
        "attention_items",
        "incomplete",
        "fast",
        "same_confidence",
    ]
    assert steps.loc["start", "participants_left"] == 7
    assert steps.loc["duplicates", "responses_removed"] == 1
    assert steps.loc["failed_attention", "participants_removed"] == 1
    assert steps.loc["failed_attention", "responses_removed"] == 4
    assert steps.loc["attention_items", "responses_removed"] == 3
    assert steps.loc["incomplete", "participants_removed"] == 1
    assert steps.loc["fast", "participants_removed"] == 1
    assert steps.loc["same_confidence", "participants_removed"] == 1
    assert steps.loc["same_confidence", "participants_left"] == 3
    assert sorted(result.data[c.PARTICIPANT].unique()) == ["ok1", "ok2", "ok3"]
    assert result.removed["fast"] == ("fast",)
    # each step's left = previous left - removed
    left = steps["responses_left"].to_numpy()
    assert (left[:-1] - steps["responses_removed"].to_numpy()[1:] == left[1:]).all()


def test_exclusions_never_look_at_accuracy() -> None:
    df = _toy()
    flipped = df.assign(**{c.ANY_CORRECT: ~df[c.ANY_CORRECT].astype(bool)})
    a = apply_exclusions(df, ExclusionConfig()).data
    b = apply_exclusions(flipped, ExclusionConfig()).data
    assert a[c.PARTICIPANT].tolist() == b[c.PARTICIPANT].tolist()


def test_sensitivity_variant_keeps_everyone_but_drops_attention_items() -> None:
    result = apply_exclusions(_toy(), ExclusionConfig.include_everyone())
    assert result.data[c.PARTICIPANT].nunique() == 7
    assert not result.data[c.IS_ATTENTION_CHECK].any()


def test_messy_study_loses_careless_participants(messy_study) -> None:
    result = apply_exclusions(add_outcomes(messy_study), ExclusionConfig())
    steps = result.steps_table().set_index("rule")
    for rule in ("failed_attention", "incomplete", "fast", "same_confidence"):
        assert steps.loc[rule, "participants_removed"] > 0, rule
    assert steps.loc["same_confidence", "participants_left"] == pytest.approx(
        result.data[c.PARTICIPANT].nunique()
    )
