"""Analysis services: a study's responses as a frame, its pre-registered plan, reports, pilots.

* ``study_responses_frame`` — the survey's long export as a typed DataFrame;
* ``analysis_plan_read`` / ``analysis_config_for`` — the study's frozen ``analysis_plan``
  JSON mapped onto an ``AnalysisConfig`` (documented keys in ``PLAN_KEYS``);
* ``study_analyze`` — build the report folder, with the plan hash and any deviation
  printed in it, and record an ``AnalysisRun``;
* ``responses_simulate`` — pilot data: simulated participants driven through the real
  survey services, answering from stated true accuracies (the model of
  ``analysis.simulation``: logit = b_method + u_participant + v_identity).
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from scipy import special, stats

from analysis import columns as c
from analysis import documents as doc
from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.models import AnalysisRun
from analysis.outcomes import add_outcomes, coerce_export, parse_ranks
from analysis.report import AnalysisConfig, build_report
from analysis.simulation import logit_intercept
from survey import services as flow
from survey.dataprotection import actor_of, audit_record
from survey.exports import LONG_COLUMNS, responses_long
from survey.models import AuditEvent, Participant, Study, plan_sha256


class AnalysisError(Exception):
    """The study cannot be analysed or simulated as asked; the message says why."""


# --- the pre-registered plan -------------------------------------------------------------

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


# --- the responses -----------------------------------------------------------------------


def study_responses_frame(*, study: Study) -> pd.DataFrame:
    """The study's long export (survey.exports.responses_long) with analysis dtypes."""
    frame = pd.DataFrame.from_records(list(responses_long(study)), columns=LONG_COLUMNS)
    frame = coerce_export(frame)
    for col in (c.SERVED_AT, c.ANSWERED_AT):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    for col in ("candidate_order", "selected_photos"):
        if col in frame:
            frame[col] = frame[col].fillna("").astype(str)
    return frame


# --- reports -----------------------------------------------------------------------------


def report_dir_default(*, study: Study) -> Path:
    """``var/reports/<slug>-<UTC timestamp>/`` under the project's VAR_DIR."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%fZ")
    return Path(settings.VAR_DIR) / "reports" / f"{study.slug}-{stamp}"


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


def _preregistration(study: Study, reading: PlanReading, n_analysed: int) -> dict[str, Any]:
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


def _preregistration_blocks(pre: dict[str, Any]) -> list[doc.Block]:
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


MATCH_SET_READINGS = {
    "image": "image-level top-K of the second recognizer (the same ranking as Metric 1, as in "
    "the paper; several photos of one person may appear among the candidates)",
    "identity": "identity-level top-K of the second recognizer (each candidate a different "
    "person; the paper shows the image-level top-K)",
}


def match_set_mode(*, study: Study) -> str:
    """One sentence: how the study's candidates were ranked (from the match sets' provenance)."""
    modes = Counter(
        str(mode) if mode else "not recorded"
        for mode in study.match_sets.values_list("provenance__match_sets", flat=True)
    )
    if not modes:
        return ""
    parts = [
        f"{MATCH_SET_READINGS.get(mode, mode)}" + (f" ({n} match sets)" if len(modes) > 1 else "")
        for mode, n in sorted(modes.items())
    ]
    sentence = "Match sets: " + "; ".join(parts) + "."
    if "not recorded" in modes:
        sentence += (
            " 'Not recorded': imported without build_study's provenance, so whether candidates "
            "are image- or identity-level is not known to the report."
        )
    return sentence


def study_arrivals(*, study: Study) -> dict[str, int]:
    """Participants by how far they got before the first question (not in the export)."""
    people = Participant.objects.filter(study=study)
    silent = people.filter(responses__isnull=True)
    status = Participant.Status
    return {
        "entered": people.count(),
        "declined_consent": silent.filter(status=status.NO_CONSENT).count(),
        "left_before_questions": silent.filter(
            status__in=[status.RETURNED, status.TIMED_OUT, status.FAILED_ATTENTION]
        ).count(),
        "in_progress_before_questions": silent.filter(status=status.ACTIVE).count(),
        "reached_questions": people.filter(responses__isnull=False).distinct().count(),
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
    unknown = sorted(set(overrides) - {f.name for f in fields(AnalysisConfig)})
    if unknown:
        raise AnalysisError(f"Not analysis settings: {', '.join(unknown)}.")
    config = replace(reading.config, **overrides)
    frame = study_responses_frame(study=study)
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
    out = Path(out_dir) if out_dir is not None else report_dir_default(study=study)
    pre = _preregistration(study, reading, int(kept[c.PARTICIPANT].nunique()))
    pre["overrides"] = overrides
    positions = position_checks(frame)
    summary = build_report(
        frame,
        config,
        out,
        preface=_preregistration_blocks(pre),
        appendix=_position_blocks(positions),
        extra={
            "preregistration": pre,
            "candidate_positions": positions,
            "match_sets": match_set_mode(study=study),
        },
        arrivals=study_arrivals(study=study),
    )
    top = headline(summary)
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
            duration_s=round(time.perf_counter() - started, 3),
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        audit_record(
            actor=actor or actor_of(user),
            action=AuditEvent.Action.ANALYSIS,
            study=study,
            detail={"run": run.pk, "out_dir": run.out_dir, "n_participants": run.n_participants},
        )
    return run


# --- pilot data --------------------------------------------------------------------------

DEFAULT_ACCURACIES: dict[str, float | None] = {
    "eigenfaces": 0.6,
    "nbnet": 0.4,
    "naive": 0.2,
    "vec2face": 0.5,
}
SIM_PREFIX = "SIM"
_CONF_THRESHOLDS = np.array([-1.2, 0.0, 1.0, 2.0])  # as analysis.simulation
P_NONE_WHEN_UNSURE = 0.3


@dataclass(frozen=True)
class SimulationResult:
    """What ``responses_simulate`` added."""

    participants: int
    completed: int
    failed_attention: int
    responses: int
    seconds: float


def _pick(
    rng: np.random.Generator,
    k: int,
    true_ranks: list[int],
    p_recognise: float | None,
) -> list[int]:
    """Ranks picked on one question (empty = "none of these"); None = at chance."""
    ranks = list(range(1, k + 1))
    if p_recognise is None:
        return [int(rng.choice(ranks))]
    wrong = [r for r in ranks if r not in true_ranks]
    if true_ranks and rng.random() < p_recognise:
        return [int(rng.choice(true_ranks))]
    if rng.random() < P_NONE_WHEN_UNSURE or not wrong:
        return []
    return [int(rng.choice(wrong))]


def responses_simulate(
    *,
    study: Study,
    participants: int,
    accuracies: Mapping[str, float | None] | None = None,
    participant_sd: float = 0.8,
    identity_sd: float = 0.5,
    careless_share: float = 0.0,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Add simulated participants (PIDs SIM000001, …) through the real survey flow.

    A method's accuracy is population-averaged (None = pure random picks). Careless
    participants answer at random and fail the attention checks. Entry skips only the
    "study is open" check, so a draft study is piloted without opening it (which would
    freeze its plan), and takes the made-up SIM IDs as a pilot study would; its rows are
    not changed.
    """
    if study.status != Study.Status.DRAFT and not study.is_demo and not force:
        raise AnalysisError(
            f"Study '{study.slug}' is {study.get_status_display().lower()} and not a demo: "
            "simulated participants would be mixed with real ones in its exports and analyses. "
            "Pilot on a draft or demo study, or pass --force to add simulated data anyway."
        )
    if participants < 1:
        raise AnalysisError("Simulate at least one participant.")
    if not 0 <= careless_share <= 1:
        raise AnalysisError("The careless share must be between 0 and 1.")
    accuracies = dict(DEFAULT_ACCURACIES if accuracies is None else accuracies)
    missing = [m for m in study.methods if m not in accuracies]
    if not study.methods:
        raise AnalysisError(f"Study '{study.slug}' has no match sets to answer.")
    if missing:
        raise AnalysisError(f"No accuracy given for method(s): {', '.join(missing)}.")
    total_sd = float(np.hypot(participant_sd, identity_sd))
    intercepts = {
        m: None if acc is None else logit_intercept(acc, total_sd) for m, acc in accuracies.items()
    }
    rng = np.random.default_rng(seed)
    py_rng = random.Random(seed)
    identity_effect: dict[str, float] = {}
    start = Participant.objects.filter(study=study, prolific_pid__startswith=SIM_PREFIX).count()
    n_careless = round(careless_share * participants)
    careless = {int(i) for i in rng.choice(participants, n_careless, replace=False)}
    entry_study = copy.copy(study)
    entry_study.status = Study.Status.OPEN
    entry_study.accept_any_ids = True  # SIM… IDs are made up, as a pilot's (rows unchanged)
    started = time.perf_counter()
    completed = failed = answered = 0
    for i in range(participants):
        with transaction.atomic():
            p = _simulated_participant(
                study=entry_study,
                pid=f"{SIM_PREFIX}{start + i + 1:06d}",
                careless=i in careless,
                intercepts=intercepts,
                identity_effect=identity_effect,
                participant_effect=float(rng.normal(0.0, participant_sd)),
                identity_sd=identity_sd,
                rng=rng,
                py_rng=py_rng,
            )
        completed += p.status == Participant.Status.COMPLETED
        failed += p.status == Participant.Status.FAILED_ATTENTION
        answered += p.responses.count()
        if progress:
            progress(i + 1, participants)
    return SimulationResult(
        participants=participants,
        completed=completed,
        failed_attention=failed,
        responses=answered,
        seconds=round(time.perf_counter() - started, 3),
    )


def _simulated_participant(
    *,
    study: Study,
    pid: str,
    careless: bool,
    intercepts: Mapping[str, float | None],
    identity_effect: dict[str, float],
    participant_effect: float,
    identity_sd: float,
    rng: np.random.Generator,
    py_rng: random.Random,
) -> Participant:
    """One simulated participation, from entry to completion code, on a realistic clock."""
    k = study.k
    n_questions = study.question_count
    durations = rng.lognormal(np.log(12.0), 0.4, n_questions)  # seconds per question
    intro = float(rng.uniform(40, 120))  # consent, demographics, instructions
    # The timeline ends now, so that the survey's own finish time gives a plausible total.
    clock = timezone.now() - timedelta(seconds=intro + float(durations.sum()) + 20.0)
    p = flow.participant_enter(
        study=study,
        prolific_pid=pid,
        study_id=study.prolific_study_id or "SIMSTUDY",
        session_id=f"{pid}SESSION",
        user_agent="analysis.simulate_responses",
    )
    if p.step != Participant.Step.CONSENT:
        raise AnalysisError(f"{pid} already took part in '{study.slug}'.")
    flow.page_visit_record(participant=p, page=Participant.Step.CONSENT, now=clock)
    p = flow.participant_consent(participant=p, consent=True)
    p = flow.participant_demographics_save(
        participant=p,
        gender=py_rng.choice(Participant.Gender.values),
        age_group=py_rng.choice(Participant.AgeGroup.values),
    )
    p = flow.participant_start_questions(participant=p, rng=py_rng)
    clock += timedelta(seconds=intro)
    conf_bias = float(rng.normal(0.0, 0.7))
    questions = p.assignments.select_related("match_set").prefetch_related("match_set__candidates")
    for a, duration in zip(questions.order_by("position"), durations, strict=False):
        flow.assignment_served(assignment=a, now=clock)
        clock += timedelta(seconds=float(duration))
        if a.is_attention_check:
            rank = a.attention_rank % k + 1 if careless else a.attention_rank
            picks, confidence = [rank], a.attention_confidence
        else:
            ms = a.match_set
            true_ranks = [cand.rank for cand in ms.candidates.all() if cand.is_true]
            b = intercepts.get(ms.method)
            if careless:
                size = int(rng.integers(1, 4))
                picks = sorted(int(r) for r in rng.choice(k, size, replace=False) + 1)
                confidence = int(rng.integers(1, 6))
            else:
                if ms.target_identity not in identity_effect:
                    identity_effect[ms.target_identity] = float(rng.normal(0.0, identity_sd))
                v = identity_effect[ms.target_identity]
                p_hit = None if b is None else float(special.expit(b + participant_effect + v))
                picks = _pick(rng, k, true_ranks, p_hit)
                latent = 0.5 + 0.8 * bool(set(picks) & set(true_ranks)) + conf_bias
                latent += float(rng.logistic())
                confidence = int(np.searchsorted(_CONF_THRESHOLDS, latent) + 1)
        result = flow.response_record(
            participant=p,
            question=a,
            selected_photos=[a.photo_number(rank, k) for rank in picks],  # as a page posts
            none_selected=not picks,
            confidence=confidence,
            now=clock,
        )
        p = result.participant
        if p.is_finished:
            return p
    return flow.participant_finish(participant=p)
