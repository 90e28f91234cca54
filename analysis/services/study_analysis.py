"""``study_analyze``: a study's report folder under its plan, recorded as an ``AnalysisRun``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from scipy import stats

from analysis import columns as c
from analysis import documents as doc
from analysis.exclusions import apply_exclusions
from analysis.models import AnalysisRun
from analysis.outcomes import add_outcomes, parse_ranks
from analysis.report import AnalysisConfig, build_report
from analysis.services.errors import AnalysisError
from analysis.services.plan import PlanReading, analysis_plan_read
from analysis.services.preregistration import preregistration_blocks, preregistration_summary
from analysis.services.study_data import match_set_mode, study_arrivals, study_responses_frame
from survey.dataprotection import actor_of, audit_record
from survey.models import AuditEvent, Study


def report_dir_default(*, study: Study) -> Path:
    """``var/reports/<slug>-<UTC timestamp>/`` under the project's VAR_DIR."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%fZ")
    return Path(settings.VAR_DIR) / "reports" / f"{study.slug}-{stamp}"


def position_checks(frame: pd.DataFrame) -> dict[str, Any] | None:
    """Selections by on-screen photo position and by similarity rank (randomisation check)."""
    if "candidate_order" not in frame or "selected_photos" not in frame:
        return None
    real = frame[~frame[c.IS_ATTENTION_CHECK]]
    if real.empty:
        return None
    k = int(real[c.K].max())
    photos = np.zeros(k, dtype=int)
    ranks = np.zeros(k, dtype=int)
    for text in real["selected_photos"]:
        for pos in parse_ranks(text):
            photos[pos - 1] += 1
    for text in real[c.SELECTED_RANKS]:
        for rank in parse_ranks(text):
            ranks[rank - 1] += 1
    randomised = bool((real["candidate_order"] != ";".join(map(str, range(1, k + 1)))).any())
    total = int(photos.sum())
    test = stats.chisquare(photos) if total else None
    return {
        "k": k,
        "randomised": randomised,
        "selections": total,
        "by_photo_position": photos.tolist(),
        "by_rank": ranks.tolist(),
        "position_chi2": float(test.statistic) if test else None,
        "position_p": float(test.pvalue) if test else None,
    }


def _position_blocks(check: dict[str, Any] | None) -> list[doc.Block]:
    """Appendix: the candidate-order table."""
    if check is None or not check["selections"]:
        return []
    total = check["selections"]
    table = pd.DataFrame(
        {
            "position / rank": range(1, check["k"] + 1),
            "share picked at photo position": [n / total for n in check["by_photo_position"]],
            "share picked of similarity rank": [n / total for n in check["by_rank"]],
        }
    )
    order = (
        "Candidates were shown in a random order per question (logged), so screen position "
        "and similarity rank are separated."
        if check["randomised"]
        else "Candidates were shown in rank order: position and rank coincide."
    )
    return [
        doc.Heading("Design check: candidate positions"),
        doc.Paragraph(
            f"{order} Uniform picking across photo positions: χ²({check['k'] - 1}) = "
            f"{check['position_chi2']:.2f}, p = {check['position_p']:.3f} "
            f"({total} selections, attention items excluded)."
        ),
        doc.Table(table, "Where selections fell: photo position on screen vs similarity rank."),
    ]


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the command prints and the admin lists, from a report's summary.

    Accuracy intervals and the test against chance are the report's defaults (crossed over
    participants and faces); GEE and bootstrap intervals are kept as ``conditional``.
    """
    tests = {t["method"]: t for t in summary["chance_tests"]}
    steps = summary["exclusions"]
    return {
        "k": summary["k"],
        "flat_chance": 1 / summary["k"],
        "inference": summary["inference"],
        "arrivals": summary.get("arrivals", {}),
        "n_participants_export": steps[0]["participants_left"],
        "n_responses_export": steps[0]["responses_left"],
        "n_participants_analysed": steps[-1]["participants_left"],
        "n_responses_analysed": steps[-1]["responses_left"],
        "exclusions": [
            {
                "rule": s["rule"],
                "participants_removed": s["participants_removed"],
                "responses_removed": s["responses_removed"],
            }
            for s in steps[1:]
        ],
        "speeders": summary.get("speeders"),
        "accuracy": [
            {
                "method": row["method"],
                "accuracy": row["accuracy"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "df": row["df"],
                "n_faces": row["n_faces"],
                "matched_chance": row["matched_chance"],
                "n_responses": row["n_responses"],
                "n_participants": row["n_participants"],
                "p_above_chance": tests.get(row["method"], {}).get("p_greater"),
                "conditional": {
                    key: row[key]
                    for key in (
                        "gee_estimate",
                        "gee_low",
                        "gee_high",
                        "bootstrap_low",
                        "bootstrap_high",
                    )
                },
            }
            for row in summary["accuracy"]
        ],
        "omnibus": summary.get("omnibus"),
        "match_sets": summary.get("match_sets"),
        "preregistration": {
            key: summary["preregistration"][key]
            for key in ("plan_sha256", "frozen_plan_sha256", "deviates", "unknown_keys")
        },
    }


def study_analyze(
    *,
    study: Study,
    out_dir: Path | None = None,
    user: Any = None,
    overrides: Mapping[str, Any] | None = None,
    actor: str = "",
) -> AnalysisRun:
    """Write the study's report folder (plan hash and deviation included) and record the run.

    ``overrides`` replace AnalysisConfig fields for this run only (e.g. ``sensitivity``,
    ``n_resamples``); the report lists them next to the plan. The run goes to the audit log
    under ``actor`` (default: ``user``'s username).
    """
    started = time.perf_counter()
    reading = analysis_plan_read(
        plan=study.analysis_plan, attention_failures_allowed=study.attention_failures_allowed
    )
    overrides = dict(overrides or {})
    config = _run_config(reading, overrides)
    frame = study_responses_frame(study=study)
    kept = _analysable_responses(study, frame, config)
    out = Path(out_dir) if out_dir is not None else report_dir_default(study=study)
    pre = preregistration_summary(study, reading, int(kept[c.PARTICIPANT].nunique()))
    pre["overrides"] = overrides
    positions = position_checks(frame)
    summary = build_report(
        frame,
        config,
        out,
        preface=preregistration_blocks(pre),
        appendix=_position_blocks(positions),
        extra={
            "preregistration": pre,
            "candidate_positions": positions,
            "match_sets": match_set_mode(study=study),
        },
        arrivals=study_arrivals(study=study),
    )
    return _run_record(
        study=study,
        config=config,
        pre=pre,
        out=out,
        top=headline(summary),
        duration_s=round(time.perf_counter() - started, 3),
        user=user,
        actor=actor,
    )


def _run_config(reading: PlanReading, overrides: dict[str, Any]) -> AnalysisConfig:
    """The plan's config with this run's overrides; AnalysisError on names it does not have."""
    unknown = sorted(set(overrides) - {f.name for f in fields(AnalysisConfig)})
    if unknown:
        raise AnalysisError(f"Not analysis settings: {', '.join(unknown)}.")
    return replace(reading.config, **overrides)


def _analysable_responses(
    study: Study, frame: pd.DataFrame, config: AnalysisConfig
) -> pd.DataFrame:
    """The responses kept by the exclusions; AnalysisError unless ≥ 2 participants remain."""
    if frame.empty:
        raise AnalysisError(f"Study '{study.slug}' has no responses yet: nothing to analyse.")
    kept = apply_exclusions(add_outcomes(frame), config.exclusions).data
    present = kept[kept[c.TARGET_PRESENT]]
    if present[c.PARTICIPANT].nunique() < 2:
        raise AnalysisError(
            f"Study '{study.slug}' has {kept[c.PARTICIPANT].nunique()} participant(s) with "
            "target-present answers after exclusions (completed sessions only); at least 2 are "
            "needed for participant-clustered estimates."
        )
    return kept


def _run_record(
    *,
    study: Study,
    config: AnalysisConfig,
    pre: dict[str, Any],
    out: Path,
    top: dict[str, Any],
    duration_s: float,
    user: Any,
    actor: str,
) -> AnalysisRun:
    """The AnalysisRun and its audit record, written together."""
    with transaction.atomic():  # no run without its audit record
        run = AnalysisRun.objects.create(
            study=study,
            config=config.as_dict(),
            plan=study.analysis_plan,
            plan_sha256=pre["plan_sha256"],
            frozen_plan_sha256=study.analysis_plan_sha256,
            plan_deviates=pre["deviates"],
            out_dir=str(out.resolve()),
            summary=top,
            n_participants=top["n_participants_analysed"],
            n_responses=top["n_responses_export"],
            duration_s=duration_s,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        audit_record(
            actor=actor or actor_of(user),
            action=AuditEvent.Action.ANALYSIS,
            study=study,
            detail={"run": run.pk, "out_dir": run.out_dir, "n_participants": run.n_participants},
        )
    return run
