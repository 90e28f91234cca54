"""The study's pre-registered analysis plan, read onto an ``AnalysisConfig``.

The plan is the study's frozen ``analysis_plan`` JSON; its documented keys are in
``PLAN_KEYS``, the keys it only records in ``DESCRIPTIVE_PLAN_KEYS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from analysis.exclusions import ExclusionConfig
from analysis.report import AnalysisConfig
from analysis.services.errors import AnalysisError
from survey.models import Study

PRIMARY_OUTCOME = "any_correct"
# Accepted JSON types per exclusion rule, from the rule's default (fast_fraction may be null).
EXCLUSION_KEYS: dict[str, tuple[type, ...]] = {
    f.name: {bool: (bool,), int: (int,), float: (float, int, type(None))}[type(f.default)]
    for f in fields(ExclusionConfig)
}
PLAN_KEYS: dict[str, str] = {
    "alpha": "significance level; intervals are at 1 − alpha (default 0.05)",
    "planned_n": "planned number of analysed participants (reported against the achieved N)",
    "primary": f"primary outcome; only '{PRIMARY_OUTCOME}' (≥ 1 true match selected) exists",
    "primary_outcome": "same as 'primary'",
    "exclusions": "object of exclusion rules: " + ", ".join(EXCLUSION_KEYS),
    "n_resamples": "bootstrap resamples (BCa; default 1999)",
    "seed": "bootstrap seed (default 0)",
    "sensitivity": "also report everyone included (default true)",
}
DESCRIPTIVE_PLAN_KEYS = ("outcomes", "tests", "hypotheses", "secondary", "notes", "description")


@dataclass(frozen=True)
class PlanReading:
    """What an analysis plan sets, what it only records, and what nothing reads."""

    config: AnalysisConfig
    applied: dict[str, Any]  # documented keys present in the plan, as given
    recorded: dict[str, Any]  # descriptive keys, kept verbatim in the report
    unknown: tuple[str, ...]  # keys (dotted for exclusions) that nothing reads
    planned_n: int | None


def analysis_plan_read(
    *, plan: Mapping[str, Any], attention_failures_allowed: int = 1
) -> PlanReading:
    """Map a plan's documented keys onto an AnalysisConfig; raise AnalysisError on bad values."""
    plan = dict(plan or {})
    known = set(PLAN_KEYS) | set(DESCRIPTIVE_PLAN_KEYS)
    unknown = [key for key in plan if key not in known]
    # The survey fails a participant when failures exceed the allowance; exclude alike.
    excl: dict[str, Any] = {"max_attention_failures": attention_failures_allowed + 1}
    given_excl = plan.get("exclusions", {})
    if not isinstance(given_excl, dict):
        raise AnalysisError("analysis plan: 'exclusions' must be an object of rule settings.")
    for key, value in given_excl.items():
        if key not in EXCLUSION_KEYS:
            unknown.append(f"exclusions.{key}")
            continue
        expected = EXCLUSION_KEYS[key]
        if isinstance(value, bool) and bool not in expected:
            expected = ()  # True is an int in Python but not a number of failures
        if not isinstance(value, expected):
            raise AnalysisError(f"analysis plan: exclusions.{key} = {value!r} has the wrong type.")
        excl[key] = value
    options: dict[str, Any] = {"exclusions": ExclusionConfig(**excl)}
    if "alpha" in plan:
        alpha = plan["alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
            raise AnalysisError(f"analysis plan: alpha = {alpha!r} must be a number in (0, 0.5).")
        options["confidence_level"] = round(1 - float(alpha), 10)
    for key, low in (("n_resamples", 99), ("seed", 0)):
        if key in plan:
            value = plan[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AnalysisError(f"analysis plan: {key} = {value!r} must be an integer ≥ {low}.")
            options[key] = value
    if "sensitivity" in plan:
        if not isinstance(plan["sensitivity"], bool):
            raise AnalysisError("analysis plan: sensitivity must be true or false.")
        options["sensitivity"] = plan["sensitivity"]
    for key in ("primary", "primary_outcome"):
        if key in plan and plan[key] != PRIMARY_OUTCOME:
            raise AnalysisError(
                f"analysis plan: {key} = {plan[key]!r}, but the only primary outcome is "
                f"'{PRIMARY_OUTCOME}' (at least one true match selected)."
            )
    planned_n = plan.get("planned_n")
    if planned_n is not None and (
        isinstance(planned_n, bool) or not isinstance(planned_n, int) or planned_n < 1
    ):
        raise AnalysisError(f"analysis plan: planned_n = {planned_n!r} must be a positive integer.")
    return PlanReading(
        config=AnalysisConfig(**options),
        applied={key: plan[key] for key in PLAN_KEYS if key in plan},
        recorded={key: plan[key] for key in DESCRIPTIVE_PLAN_KEYS if key in plan},
        unknown=tuple(unknown),
        planned_n=planned_n,
    )


def analysis_config_for(*, study: Study) -> AnalysisConfig:
    """The AnalysisConfig of the study's analysis plan (defaults where the plan is silent)."""
    return analysis_plan_read(
        plan=study.analysis_plan, attention_failures_allowed=study.attention_failures_allowed
    ).config
