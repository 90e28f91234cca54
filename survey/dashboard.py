"""The live study dashboard in the admin: the figures (`study_dashboard`) and its two views.

The page (``admin/survey/study/<id>/dashboard/``) draws the figures once and then fetches the
JSON endpoint (``…/dashboard.json``, staff only, never cached) every 5 seconds and updates
itself in place; without JavaScript it falls back to a meta refresh every 30 seconds.

Figures, all computed from the database (no pandas, no statsmodels):

* arrivals and completions over time, in buckets of 1, 5, 15 or 60 minutes (or a day), chosen
  so that the study's span fits in at most 48 bars;
* participants by status;
* median seconds per question (attention items excluded) and per participant so far;
* attention: failed checks / answered checks, and the share of participants failed;
* speeders: answers faster than the study's ``speeder_seconds`` (the survey's ``is_fast``);
* accuracy so far per method: share of target-present answers with at least one true match,
  from participants who are neither failed, returned nor timed out, with a Wilson score interval
  (the same interval as ``analysis.estimates.method_accuracy``'s ``wilson_low/high``).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from survey.models import Candidate, FvrMethod, Participant, Response, Study

BUCKET_MINUTES = (1, 5, 15, 60, 24 * 60)
MAX_BARS = 48
REFRESH_SECONDS = 5
LEVEL = 0.95


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (NaN when n = 0)."""
    if n == 0:
        return math.nan, math.nan
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _bucket_minutes(span: timedelta) -> int:
    minutes = span.total_seconds() / 60
    for size in BUCKET_MINUTES:
        if minutes / size <= MAX_BARS:
            return size
    return BUCKET_MINUTES[-1]


def _floor(moment: datetime, minutes: int) -> datetime:
    start = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if minutes >= 24 * 60:
        return start.replace(hour=0, minute=0)
    total = start.hour * 60 + start.minute
    floored = total - total % minutes
    return start.replace(hour=floored // 60, minute=floored % 60)


def _timeline(entered: list[datetime], completed: list[datetime], until: datetime) -> dict:
    """Arrivals and completions per time bucket, from the first arrival to `until`."""
    if not entered:
        return {"bucket_minutes": 1, "bars": []}
    first, last = min(entered), max([until, *entered, *completed])
    minutes = _bucket_minutes(last - first)
    step = timedelta(minutes=minutes)
    arrivals = Counter(_floor(t, minutes) for t in entered)
    completions = Counter(_floor(t, minutes) for t in completed)
    bars, at, end = [], _floor(first, minutes), _floor(last, minutes)
    while at <= end and len(bars) < 2 * MAX_BARS:
        bars.append(
            {"start": at.isoformat(), "arrivals": arrivals[at], "completions": completions[at]}
        )
        at += step
    return {"bucket_minutes": minutes, "bars": bars}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def study_dashboard(*, study: Study, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the study's live dashboard, as JSON-ready values."""
    now = now or timezone.now()
    people = _people(study, now)
    by_status = Counter(p["status"] for p in people)
    counts = [
        {"status": value, "label": label, "n": by_status.get(value, 0)}
        for value, label in Participant.Status.choices
    ]
    completed = [
        p for p in people if p["status"] == Participant.Status.COMPLETED and p["finished_at"]
    ]
    responses = _responses(study)
    real = [r for r in responses if not r["assignment__is_attention_check"]]
    checks = [r for r in responses if r["assignment__is_attention_check"]]
    durations = [(r["answered_at"] - r["served_at"]).total_seconds() for r in real]
    totals = [(p["finished_at"] - p["entered_at"]).total_seconds() for p in completed]
    return {
        "study": study.slug,
        "generated_at": now.isoformat(),
        "participants": len(people),
        "responses": len(real),
        "counts": counts,
        "timeline": _timeline(
            [p["entered_at"] for p in people],
            [p["finished_at"] for p in completed],
            # A live study's axis runs to now; a closed one's ends at its last event.
            now if study.status == Study.Status.OPEN else (study.closed_at or now),
        ),
        "median_seconds_per_question": _median(durations),
        "median_minutes_per_participant": _median([t / 60 for t in totals]),
        "attention": _attention(checks, by_status),
        "speeders": _speeders(study, real),
        "accuracy": _accuracy(study, real, people),
    }


def _people(study: Study, now: datetime) -> list[dict]:
    """The study's participants (status, times, failed checks), those out of time as timed out."""
    people = list(
        Participant.objects.filter(study=study).values(
            "pk", "status", "entered_at", "finished_at", "attention_failures"
        )
    )
    # Active participants whose time is up count as timed out, marked or not yet (marking
    # happens as participants and arrivals come; the dashboard only reads).
    late_entry = now - study.time_limit
    for p in people:
        if p["status"] == Participant.Status.ACTIVE and p["entered_at"] <= late_entry:
            p["status"] = Participant.Status.TIMED_OUT
    return people


def _responses(study: Study) -> list[dict]:
    """The study's answers, with their question's method and match set."""
    return list(
        Response.objects.filter(participant__study=study).values(
            "participant_id",
            "assignment__is_attention_check",
            "attention_passed",
            "is_fast",
            "any_correct",
            "served_at",
            "answered_at",
            method=F("assignment__match_set__method"),
            match_set_id=F("assignment__match_set_id"),
        )
    )


def _attention(checks: list[dict], by_status: Counter) -> dict[str, Any]:
    """Failed checks / answered checks, and the share of participants checked who failed."""
    failed_checks = sum(r["attention_passed"] is False for r in checks)
    reached_checks = {r["participant_id"] for r in checks}
    return {
        "checks_answered": len(checks),
        "checks_failed": failed_checks,
        "failure_rate": failed_checks / len(checks) if checks else None,
        "participants_checked": len(reached_checks),
        "participants_failed": by_status.get(Participant.Status.FAILED_ATTENTION, 0),
        "participant_failure_rate": (
            by_status.get(Participant.Status.FAILED_ATTENTION, 0) / len(reached_checks)
            if reached_checks
            else None
        ),
    }


def _speeders(study: Study, real: list[dict]) -> dict[str, Any]:
    """Answers faster than the study's speeder threshold, and who gave them."""
    fast = [r for r in real if r["is_fast"]]
    return {
        "threshold_seconds": study.speeder_seconds,
        "fast_answers": len(fast),
        "fast_share": len(fast) / len(real) if real else None,
        "participants_with_fast_answers": len({r["participant_id"] for r in fast}),
    }


def _accuracy(study: Study, real: list[dict], people: list[dict]) -> list[dict]:
    """Per method: target-present answers with ≥ 1 true match, Wilson interval."""
    # As for balance: completed participants and active ones still within their time.
    counted = {
        p["pk"]
        for p in people
        if p["status"] in (Participant.Status.ACTIVE, Participant.Status.COMPLETED)
    }
    present = set(
        Candidate.objects.filter(match_set__study=study, is_true=True).values_list(
            "match_set_id", flat=True
        )
    )
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in real:
        if r["participant_id"] in counted and r["match_set_id"] in present:
            tallies[r["method"]][0] += bool(r["any_correct"])
            tallies[r["method"]][1] += 1
    rows = []
    labels = dict(FvrMethod.choices)
    for method in study.methods:
        k, n = tallies[method]
        low, high = wilson_interval(k, n)
        rows.append(
            {
                "method": method,
                "label": labels.get(method, method),
                "correct": k,
                "n": n,
                "accuracy": k / n if n else None,
                "low": None if n == 0 else low,
                "high": None if n == 0 else high,
            }
        )
    return rows


# --- views (mounted by StudyAdmin.get_urls) ---------------------------------------------------


def _study_for(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> Study:
    # The admin's own lookup: a malformed id (text, NUL, traversal) is a 404, not a 500.
    study = model_admin.get_object(request, object_id)
    if study is None:
        raise Http404("No such study.")
    if not model_admin.has_view_permission(request, study):
        raise PermissionDenied
    return study


def dashboard_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin
) -> HttpResponse:
    """The dashboard page: figures drawn now, then refreshed from the JSON endpoint."""
    study = _study_for(model_admin, request, object_id)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Study._meta,
        "original": study,
        "title": f"Live dashboard: {study.title}",
        "study": study,
        "figures": study_dashboard(study=study),
        "refresh_seconds": REFRESH_SECONDS,
    }
    response = TemplateResponse(request, "survey/admin/study_dashboard.html", context)
    response["Cache-Control"] = "no-store"
    return response


@never_cache
def dashboard_data_view(
    request: HttpRequest, object_id: str, *, model_admin: admin.ModelAdmin
) -> JsonResponse:
    """The dashboard's figures as JSON (staff only, never cached)."""
    study = _study_for(model_admin, request, object_id)
    response = JsonResponse(study_dashboard(study=study))
    response["Cache-Control"] = "no-store"
    return response
