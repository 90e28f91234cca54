"""The long export: one row per response, with participant pseudonyms (never raw IDs)."""

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.utils import timezone

from survey.models import PageVisit, Participant, Response, Study

LONG_COLUMNS: list[str] = [
    "participant",
    "study",
    "position",
    "method",
    "match_set",
    "target_identity",
    "is_attention_check",
    "attention_passed",
    "k",
    "n_true",
    "selected_ranks",
    "candidate_order",
    "selected_photos",
    "n_selected",
    "none_selected",
    "n_correct",
    "any_correct",
    "confidence",
    "served_at",
    "answered_at",
    "duration_s",
    "is_fast",
    "participant_status",
    "participant_flags",
    "participant_verified",
    "participant_total_s",
]


def _total_seconds(participant: Participant, consent_served: dict[int, object]) -> float | None:
    start = consent_served.get(participant.pk)
    if participant.finished_at is None or start is None:
        return None
    return round((participant.finished_at - start).total_seconds(), 3)


def _status(participant: Participant, late_entry: datetime) -> str:
    """The participant's status; TIMED_OUT for an active one who entered by ``late_entry`` (the
    study's maximum minutes ago) and was not marked yet: marking happens as participants and
    arrivals come, and an export only reads."""
    if participant.status == Participant.Status.ACTIVE and participant.entered_at <= late_entry:
        return Participant.Status.TIMED_OUT
    return participant.status


def responses_long(study: Study) -> Iterator[dict]:
    """Yield the study's responses as long-format rows (see LONG_COLUMNS)."""
    late_entry = timezone.now() - study.time_limit
    consent_served = dict(
        PageVisit.objects.filter(
            participant__study=study, page=Participant.Step.CONSENT
        ).values_list("participant_id", "served_at")
    )
    responses = (
        Response.objects.filter(participant__study=study)
        .select_related("participant", "assignment__match_set")
        .prefetch_related("assignment__match_set__candidates")
        .order_by("participant__entered_at", "participant_id", "assignment__position")
    )
    for r in responses.iterator(chunk_size=500):
        match_set = r.assignment.match_set
        true_ranks = {c.rank for c in match_set.candidates.all() if c.is_true}
        order = r.assignment.display_order(study.k)
        yield {
            "participant": r.participant.pseudonym,
            "study": study.slug,
            "position": r.assignment.position,
            "method": match_set.method,
            "match_set": match_set.key,
            "target_identity": match_set.target_identity,
            "is_attention_check": r.assignment.is_attention_check,
            "attention_passed": r.attention_passed,
            "k": study.k,
            "n_true": len(true_ranks),
            "selected_ranks": ";".join(str(rank) for rank in r.selected_ranks),
            "candidate_order": ";".join(str(rank) for rank in order),
            "selected_photos": ";".join(str(order.index(rank) + 1) for rank in r.selected_ranks),
            "n_selected": len(r.selected_ranks),
            "none_selected": r.none_selected,
            "n_correct": len(true_ranks.intersection(r.selected_ranks)),
            "any_correct": r.any_correct,
            "confidence": r.confidence,
            "served_at": r.served_at.isoformat(),
            "answered_at": r.answered_at.isoformat(),
            "duration_s": round(r.duration_seconds, 3),
            "is_fast": r.is_fast,
            "participant_status": _status(r.participant, late_entry),
            # Reasons to doubt the participation (survey.services.REENTRY_*), ";"-joined.
            "participant_flags": ";".join(r.participant.integrity_flags),
            # Whether Prolific confirmed the SESSION_ID (survey.prolific); empty when the study
            # has no Prolific STUDY_ID, so verification does not apply.
            "participant_verified": (
                r.participant.session_verified_at is not None if study.prolific_study_id else None
            ),
            "participant_total_s": _total_seconds(r.participant, consent_served),
        }


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[dict]) -> Iterator[str]:
    """Render long rows as CSV text, one line at a time (for streaming responses)."""
    writer = csv.DictWriter(_Echo(), fieldnames=LONG_COLUMNS)
    yield writer.writeheader()
    for row in rows:
        yield writer.writerow({k: "" if v is None else v for k, v in row.items()})


def csv_text(study: Study) -> str:
    """The whole long export as one CSV string."""
    buffer = io.StringIO()
    for line in csv_lines(responses_long(study)):
        buffer.write(line)
    return buffer.getvalue()
