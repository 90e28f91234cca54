"""Participant and response exclusions, applied step by step with counts at each step.

Rules are fixed before looking at results (a frozen config recorded with the report) and
never use accuracy: attention failures, incomplete sessions, participations whose Prolific
submission was not verified or that carry integrity flags, fast completion (< a fraction of
the median total time), the same confidence on every question, duplicate answers. Attention
items are removed from all analyses; they are not data. The sensitivity variant
(``ExclusionConfig.sensitivity_variant()``) keeps every participant with responses, except
those left out for integrity (unverified, flagged), who may not be a study participant at all.

Unverified: where the study ran on Prolific (the export's ``participant_verified`` is true or
false; it is empty for a study without a Prolific STUDY_ID, such as a demo or pilot), a
participant whose SESSION_ID Prolific's API did not confirm as their submission to this study
(``manage.py prolific SLUG verify``) is left out: their answers cannot be tied to a Prolific
participation. Flagged: ``participant_flags`` names reasons to doubt the participation (e.g.
a re-entry under a new Prolific ID after declining or failing). Both are on by default; an
analysis plan may set ``exclude_unverified`` or ``exclude_flagged`` to false.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace

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
    exclude_unverified: bool = True  # ran on Prolific, SESSION_ID not confirmed by its API
    exclude_flagged: bool = True  # integrity flags (e.g. a re-entry under a new Prolific ID)
    fast_fraction: float | None = 1 / 3  # total time < fraction × median of completers
    exclude_same_confidence: bool = True  # one confidence value on every question
    min_questions_same_confidence: int = 5  # only judge straight-lining on this many answers

    @classmethod
    def include_everyone(cls) -> ExclusionConfig:
        """Every participant with responses, except unverified and flagged participations."""
        return cls(
            exclude_failed_attention=False,
            exclude_incomplete=False,
            fast_fraction=None,
            exclude_same_confidence=False,
        )

    def sensitivity_variant(self) -> ExclusionConfig:
        """The sensitivity analysis: everyone included, with this config's integrity rules."""
        return replace(
            self.include_everyone(),
            exclude_unverified=self.exclude_unverified,
            exclude_flagged=self.exclude_flagged,
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
        data = _without_duplicates(data)
        steps.append(_step("duplicates", "repeat answers to a match set or position", before, data))

    if config.exclude_failed_attention:
        drop_participants(
            "failed_attention",
            f"≥ {config.max_attention_failures} failed attention checks",
            _failed_attention(df, config.max_attention_failures),
        )

    if config.drop_attention_items:
        before = data
        data = data[~data[c.IS_ATTENTION_CHECK]]
        steps.append(_step("attention_items", "attention items removed (not data)", before, data))

    if config.exclude_incomplete:
        who = set(data.loc[data[c.PARTICIPANT_STATUS] != c.STATUS_COMPLETED, c.PARTICIPANT])
        drop_participants("incomplete", "session not completed", who)

    if config.exclude_unverified:
        who, description = _unverified(data)
        drop_participants("unverified", description, who)

    if config.exclude_flagged:
        who, description = _flagged(data)
        drop_participants("flagged", description, who)

    if config.fast_fraction is not None:
        fast = _fast(df, config.fast_fraction)
        if fast is not None:
            drop_participants("fast", fast[1], fast[0])

    if config.exclude_same_confidence:
        who = _same_confidence(data, config.min_questions_same_confidence)
        drop_participants("same_confidence", "same confidence on every question", who)

    return ExclusionResult(data=data.reset_index(drop=True), steps=tuple(steps), removed=removed)


def _without_duplicates(data: pd.DataFrame) -> pd.DataFrame:
    """Keep each participant's first answer to a match set and to a position."""
    order = data.sort_values([c.PARTICIPANT, c.ANSWERED_AT, c.POSITION], kind="stable")
    real = order[~order[c.IS_ATTENTION_CHECK]]
    dup_index = real.index[real.duplicated([c.PARTICIPANT, c.MATCH_SET], keep="first")]
    pos_dup = order.index[order.duplicated([c.PARTICIPANT, c.POSITION], keep="first")]
    return data.drop(index=dup_index.union(pos_dup))


def _failed_attention(df: pd.DataFrame, max_failures: int) -> set[str]:
    """Participants with ``max_failures`` failed checks, or ended by the survey for failing."""
    attention = df[df[c.IS_ATTENTION_CHECK]]
    failed = ~attention[c.ATTENTION_PASSED].fillna(True).astype(bool)
    failed_counts = failed.groupby(attention[c.PARTICIPANT]).sum()
    by_count = set(failed_counts.index[failed_counts >= max_failures])
    by_status = set(df.loc[df[c.PARTICIPANT_STATUS] == c.STATUS_FAILED_ATTENTION, c.PARTICIPANT])
    return by_count | by_status


def _fast(df: pd.DataFrame, fraction: float) -> tuple[set[str], str] | None:
    """Completed participants faster in total than ``fraction`` × the median (None: no totals)."""
    totals = (
        df[df[c.PARTICIPANT_STATUS] == c.STATUS_COMPLETED]
        .groupby(c.PARTICIPANT)[c.PARTICIPANT_TOTAL_S]
        .first()
        .dropna()
    )
    if not len(totals):
        return None
    limit = fraction * float(totals.median())
    who = set(totals.index[totals < limit])
    return who, f"total time < {fraction:.3g} × median ({limit:.0f} s)"


def _same_confidence(data: pd.DataFrame, min_questions: int) -> set[str]:
    """Participants who gave one confidence rating on all of at least ``min_questions``."""
    real = data[~data[c.IS_ATTENTION_CHECK]]
    per = real.groupby(c.PARTICIPANT)[c.CONFIDENCE].agg(["nunique", "size"])
    return set(per.index[(per["nunique"] == 1) & (per["size"] >= min_questions)])


def _unverified(data: pd.DataFrame) -> tuple[set[str], str]:
    """Participants whose Prolific submission was not verified, where verification applies."""
    if c.PARTICIPANT_VERIFIED not in data:
        return set(), "Prolific verification: not in this export"
    verified = data[c.PARTICIPANT_VERIFIED].astype("boolean")
    if verified.isna().all():
        return set(), "Prolific verification: does not apply (study without a Prolific STUDY_ID)"
    who = set(data.loc[verified.eq(False).fillna(False).astype(bool), c.PARTICIPANT])
    return who, "ran on Prolific, SESSION_ID not confirmed as their submission (unverified)"


def _flagged(data: pd.DataFrame) -> tuple[set[str], str]:
    """Participants with integrity flags; the description counts each reason."""
    if c.PARTICIPANT_FLAGS not in data:
        return set(), "integrity flags: not in this export"
    flags = data.groupby(c.PARTICIPANT)[c.PARTICIPANT_FLAGS].first().astype("string").fillna("")
    flagged = flags[flags.str.strip() != ""]
    reasons = Counter(reason for text in flagged for reason in text.split(";") if reason.strip())
    counted = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
    return set(flagged.index), f"integrity flags ({counted or 'none'})"


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


def speeder_summary(data: pd.DataFrame, analysed: pd.DataFrame) -> dict[str, float | int]:
    """The survey's per-question speed flags (``is_fast``: faster than the study's
    ``speeder_seconds``), over every answer in the export and over the analysed ones.

    Descriptive: the flags exclude nobody by themselves (the ``fast`` rule judges a whole
    session's time); a high share among analysed answers is worth a look before publishing.
    """

    def shares(frame: pd.DataFrame) -> tuple[int, int, int, int]:
        real = frame[~frame[c.IS_ATTENTION_CHECK]]
        fast = real[c.IS_FAST].astype("boolean").fillna(False).astype(bool)
        per = fast.groupby(real[c.PARTICIPANT]).mean()
        return len(real), int(fast.sum()), int((per > 0).sum()), int((per >= 0.5).sum())

    answers, fast, any_fast, mostly = shares(data)
    a_answers, a_fast, _, a_mostly = shares(analysed)
    real = data[~data[c.IS_ATTENTION_CHECK]]
    median = float(real[c.DURATION_S].median()) if len(real) else float("nan")
    return {
        "answers": answers,
        "fast_answers": fast,
        "fast_share": fast / answers if answers else float("nan"),
        "participants_with_fast_answers": any_fast,
        "participants_mostly_fast": mostly,  # at least half of their answers flagged
        "median_seconds_per_answer": median,
        "analysed_answers": a_answers,
        "analysed_fast_answers": a_fast,
        "analysed_fast_share": a_fast / a_answers if a_answers else float("nan"),
        "analysed_participants_mostly_fast": a_mostly,
    }
