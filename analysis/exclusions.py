"""Participant and response exclusions, applied step by step with counts at each step.

Rules are fixed before looking at results (a frozen config recorded with the report) and
never use accuracy: attention failures, incomplete sessions, fast completion (< a fraction
of the median total time), the same confidence on every question, duplicate answers.
Attention items are removed from all analyses; they are not data. The sensitivity variant
(``ExclusionConfig.include_everyone()``) keeps every participant with responses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from analysis import columns as c


@dataclass(frozen=True)
class ExclusionConfig:
    """Which exclusion rules to apply; defaults are the preregistered ones."""

    drop_duplicates: bool = True  # keep the first answer per participant and match set
    drop_attention_items: bool = True  # always on in analyses; a switch only for inspection
    exclude_failed_attention: bool = True
    max_attention_failures: int = 2  # Prolific: fail only after two failed checks (5+ min)
    exclude_incomplete: bool = True  # status other than "completed"
    fast_fraction: float | None = 1 / 3  # total time < fraction × median of completers
    exclude_same_confidence: bool = True  # one confidence value on every question
    min_questions_same_confidence: int = 5  # only judge straight-lining on this many answers

    @classmethod
    def include_everyone(cls) -> ExclusionConfig:
        """Sensitivity variant: every participant with responses is kept."""
        return cls(
            exclude_failed_attention=False,
            exclude_incomplete=False,
            fast_fraction=None,
            exclude_same_confidence=False,
        )

    def as_dict(self) -> dict[str, object]:
        """Plain dict for config.json."""
        return asdict(self)


@dataclass(frozen=True)
class ExclusionStep:
    """What one rule removed and what was left."""

    rule: str
    description: str
    participants_removed: int
    responses_removed: int
    participants_left: int
    responses_left: int


@dataclass(frozen=True)
class ExclusionResult:
    """Data left after exclusions, the steps taken, and who was removed by which rule."""

    data: pd.DataFrame
    steps: tuple[ExclusionStep, ...]
    removed: dict[str, tuple[str, ...]]

    def steps_table(self) -> pd.DataFrame:
        """The steps as a DataFrame, in order."""
        return pd.DataFrame([asdict(step) for step in self.steps])


def apply_exclusions(df: pd.DataFrame, config: ExclusionConfig) -> ExclusionResult:
    """Apply the configured rules in order; counts are taken after each rule."""
    data = df.copy()
    steps = [_step("start", "all responses in the export", data, data)]
    removed: dict[str, tuple[str, ...]] = {}

    def drop_participants(rule: str, description: str, who: set[str]) -> None:
        nonlocal data
        before = data
        data = data[~data[c.PARTICIPANT].isin(who)]
        removed[rule] = tuple(sorted(who & set(before[c.PARTICIPANT])))
        steps.append(_step(rule, description, before, data))

    if config.drop_duplicates:
        before = data
        order = data.sort_values([c.PARTICIPANT, c.ANSWERED_AT, c.POSITION], kind="stable")
        real = order[~order[c.IS_ATTENTION_CHECK]]
        dup_index = real.index[real.duplicated([c.PARTICIPANT, c.MATCH_SET], keep="first")]
        pos_dup = order.index[order.duplicated([c.PARTICIPANT, c.POSITION], keep="first")]
        data = data.drop(index=dup_index.union(pos_dup))
        steps.append(_step("duplicates", "repeat answers to a match set or position", before, data))

    if config.exclude_failed_attention:
        attention = df[df[c.IS_ATTENTION_CHECK]]
        failed = ~attention[c.ATTENTION_PASSED].fillna(True).astype(bool)
        failed_counts = failed.groupby(attention[c.PARTICIPANT]).sum()
        by_count = set(failed_counts.index[failed_counts >= config.max_attention_failures])
        by_status = set(
            df.loc[df[c.PARTICIPANT_STATUS] == c.STATUS_FAILED_ATTENTION, c.PARTICIPANT]
        )
        drop_participants(
            "failed_attention",
            f"≥ {config.max_attention_failures} failed attention checks",
            by_count | by_status,
        )

    if config.drop_attention_items:
        before = data
        data = data[~data[c.IS_ATTENTION_CHECK]]
        steps.append(_step("attention_items", "attention items removed (not data)", before, data))

    if config.exclude_incomplete:
        who = set(data.loc[data[c.PARTICIPANT_STATUS] != c.STATUS_COMPLETED, c.PARTICIPANT])
        drop_participants("incomplete", "session not completed", who)

    if config.fast_fraction is not None:
        totals = (
            df[df[c.PARTICIPANT_STATUS] == c.STATUS_COMPLETED]
            .groupby(c.PARTICIPANT)[c.PARTICIPANT_TOTAL_S]
            .first()
            .dropna()
        )
        if len(totals):
            limit = config.fast_fraction * float(totals.median())
            who = set(totals.index[totals < limit])
            drop_participants(
                "fast", f"total time < {config.fast_fraction:.3g} × median ({limit:.0f} s)", who
            )

    if config.exclude_same_confidence:
        real = data[~data[c.IS_ATTENTION_CHECK]]
        per = real.groupby(c.PARTICIPANT)[c.CONFIDENCE].agg(["nunique", "size"])
        who = set(
            per.index[(per["nunique"] == 1) & (per["size"] >= config.min_questions_same_confidence)]
        )
        drop_participants("same_confidence", "same confidence on every question", who)

    return ExclusionResult(data=data.reset_index(drop=True), steps=tuple(steps), removed=removed)


def _step(rule: str, description: str, before: pd.DataFrame, after: pd.DataFrame) -> ExclusionStep:
    """Counts for one step."""
    return ExclusionStep(
        rule=rule,
        description=description,
        participants_removed=before[c.PARTICIPANT].nunique() - after[c.PARTICIPANT].nunique(),
        responses_removed=len(before) - len(after),
        participants_left=after[c.PARTICIPANT].nunique(),
        responses_left=len(after),
    )
