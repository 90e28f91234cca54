"""The report's pre-registration record: the plan's hashes, any deviation, the keys used."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from analysis import documents as doc
from analysis.models import AnalysisRun
from analysis.services.plan import PlanReading
from survey.models import Study, plan_sha256


def _frozen_plan(study: Study) -> dict[str, Any] | None:
    """The frozen plan's content, if an earlier run recorded a plan with the frozen hash."""
    if not study.analysis_plan_sha256:
        return None
    earlier = (
        AnalysisRun.objects.filter(study=study, plan_sha256=study.analysis_plan_sha256)
        .order_by("created_at")
        .first()
    )
    return earlier.plan if earlier else None


def _plan_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level keys added, removed or changed between two plans."""
    keys = sorted(set(old) | set(new))
    return [
        f"{key}: {old.get(key, '(absent)')!r} → {new.get(key, '(absent)')!r}"
        for key in keys
        if old.get(key) != new.get(key)
    ]


def preregistration_summary(study: Study, reading: PlanReading, n_analysed: int) -> dict[str, Any]:
    """The plan's hashes, deviation, settings and unknown keys, for summary.json."""
    frozen = _frozen_plan(study)
    return {
        "plan_sha256": plan_sha256(study.analysis_plan),
        "frozen_plan_sha256": study.analysis_plan_sha256 or None,
        "frozen_at": (
            study.analysis_plan_frozen_at.isoformat() if study.analysis_plan_frozen_at else None
        ),
        "deviates": study.analysis_plan_changed,
        "changes": (
            _plan_changes(frozen, study.analysis_plan)
            if frozen is not None and study.analysis_plan_changed
            else []
        ),
        "applied": reading.applied,
        "recorded": reading.recorded,
        "unknown_keys": list(reading.unknown),
        "planned_n": reading.planned_n,
        "analysed_n": n_analysed,
    }


def preregistration_blocks(pre: dict[str, Any]) -> list[doc.Block]:
    """The report's opening section: frozen plan hash, deviation flag, settings used."""
    blocks: list[doc.Block] = [doc.Heading("Pre-registration")]
    if pre["frozen_plan_sha256"] is None:
        blocks.append(
            doc.Paragraph(
                "NOT PRE-REGISTERED: the study has never been opened, so no analysis plan was "
                f"frozen. Plan used (SHA-256): {pre['plan_sha256']}."
            )
        )
    else:
        blocks.append(
            doc.Paragraph(
                f"Analysis plan frozen when the study opened ({pre['frozen_at']}), SHA-256: "
                f"{pre['frozen_plan_sha256']}."
            )
        )
        if pre["deviates"]:
            changed = "; ".join(pre["changes"]) or "the frozen plan's content is not on record"
            blocks.append(
                doc.Paragraph(
                    "DEVIATION FROM THE PRE-REGISTERED PLAN: the plan was changed after the "
                    f"study opened; this report uses plan SHA-256 {pre['plan_sha256']}. "
                    f"Changes: {changed}."
                )
            )
        else:
            blocks.append(doc.Paragraph("No deviation: this report uses the frozen plan."))
    rows = [
        *({"plan key": k, "value": _json(v), "used": "yes"} for k, v in pre["applied"].items()),
        *({"plan key": k, "value": _json(v), "used": "noted"} for k, v in pre["recorded"].items()),
        *({"plan key": k, "value": "", "used": "UNKNOWN: ignored"} for k in pre["unknown_keys"]),
    ]
    if rows:
        blocks.append(doc.Table(pd.DataFrame(rows), "Analysis plan keys and how they were used."))
    else:
        blocks.append(doc.Paragraph("The plan is empty: every setting is the package default."))
    if pre.get("overrides"):
        changed = ", ".join(f"{k} = {v!r}" for k, v in pre["overrides"].items())
        blocks.append(
            doc.Paragraph(f"Settings changed for this run only (not in the plan): {changed}.")
        )
    if pre["planned_n"] is not None:
        blocks.append(
            doc.Paragraph(
                f"Planned N = {pre['planned_n']} participants; analysed N = {pre['analysed_n']} "
                "after exclusions."
            )
        )
    return blocks


def _json(value: object) -> str:
    """A plan value as the JSON it was written in."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
