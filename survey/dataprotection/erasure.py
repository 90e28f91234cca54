"""Erasing one person's data on their request."""

from dataclasses import dataclass

from django.db import transaction

from survey.dataprotection.audit import (
    Action,
    DataProtectionError,
    audit_events_scrub,
    audit_record,
    bonus_submissions_hash,
)
from survey.models import AuditEvent, Participant, Study, pseudonymise
from survey.services.slots import slot_free


@dataclass(frozen=True)
class DeleteResult:
    """What a deletion removed (or would remove, on a dry run)."""

    pseudonym: str
    study: str
    status: str
    deleted: dict[str, int]
    bonuses_kept: int
    dry_run: bool
    event: AuditEvent | None


def _reason_scrubbed(reason: str, *identifiers: str) -> str:
    """The reason as typed, with any raw identifier the operator pasted into it masked."""
    for identifier in identifiers:
        if identifier:
            reason = reason.replace(identifier, "[Prolific ID removed]")
    return reason


def participant_delete(
    *,
    study: Study,
    actor: str,
    reason: str,
    prolific_pid: str | None = None,
    pseudonym: str | None = None,
    dry_run: bool = False,
) -> DeleteResult:
    """Erase one participant's data in a study on their request, and audit it.

    Deleted: the participant row and, with it, their assignments, responses, page visits and
    refused-request log rows. Kept: the audit log (this deletion's record names only the
    pseudonym, the reason and the counts; earlier rows lose any raw submission ID) and Prolific
    bonus rows (a payment record), which lose their link to the participant and keep only the
    submission ID's keyed hash. The other participants' rows are untouched; the freed
    match-set slots count as unanswered again, so later arrivals refill them.
    """
    if (prolific_pid is None) == (pseudonym is None):
        raise DataProtectionError("Identify the participant by Prolific ID or by pseudonym (one).")
    if not reason.strip():
        raise DataProtectionError(
            "Give the reason for the deletion (e.g. 'participant request via Prolific message, "
            "2026-11-26'); it is kept in the audit log."
        )
    key = pseudonymise(prolific_pid.strip()) if prolific_pid is not None else pseudonym.strip()
    by = "Prolific ID" if prolific_pid is not None else "pseudonym"
    with transaction.atomic():
        participant = _participant_locked(study, key=key, by=by)
        counts = _rows_of(participant)
        bonuses = participant.bonuses.count()
        status = participant.status
        event = None
        if not dry_run:
            counts, event = _participant_erase(
                participant,
                study=study,
                actor=actor,
                key=key,
                detail={
                    "reason": _reason_scrubbed(
                        reason.strip(), participant.prolific_pid, prolific_pid or ""
                    ),
                    "identified_by": "prolific_pid" if prolific_pid is not None else "pseudonym",
                    "status": status,
                },
                bonuses=bonuses,
            )
    return DeleteResult(
        pseudonym=key,
        study=study.slug,
        status=status,
        deleted=counts,
        bonuses_kept=bonuses,
        dry_run=dry_run,
        event=event,
    )


def _participant_locked(study: Study, *, key: str, by: str) -> Participant:
    """The study's participant with this pseudonym, row locked (the caller's transaction)."""
    # Study row first, then the participant: the lock order of survey.services.
    Study.objects.select_for_update(no_key=True).get(pk=study.pk)
    participant = (
        Participant.objects.select_for_update(of=("self",))
        .filter(study=study, pseudonym=key)
        .first()
    )
    if participant is None:
        raise DataProtectionError(
            f"No participant with that {by} in study '{study.slug}'. Check the study and "
            "the identifier (a pseudonym is the 16-character code in exports)."
        )
    return participant


def _rows_of(participant: Participant) -> dict[str, int]:
    """How many rows of each kind a deletion of the participant would remove with it."""
    return {
        "assignments": participant.assignments.count(),
        "responses": participant.responses.count(),
        "page_visits": participant.visits.count(),
        "refused_requests": participant.refusedrequest_set.count(),
    }


def _participant_erase(
    participant: Participant, *, study: Study, actor: str, key: str, detail: dict, bonuses: int
) -> tuple[dict[str, int], AuditEvent]:
    """Delete the participant's rows and audit it: ``(rows deleted per kind, the event)``."""
    # The bonus rows stay as payment records, unlinked and under the submission's keyed
    # hash; older audit rows lose any raw submission or Prolific ID they still hold.
    bonus_submissions_hash(bonuses=participant.bonuses.all())
    audit_scrubbed = audit_events_scrub(participants=[participant])
    slot_free(participant)
    _, per_model = participant.delete()
    counts = {
        "participants": per_model.get("survey.Participant", 0),
        "assignments": per_model.get("survey.Assignment", 0),
        "responses": per_model.get("survey.Response", 0),
        "page_visits": per_model.get("survey.PageVisit", 0),
        "refused_requests": per_model.get("survey.RefusedRequest", 0),
    }
    event = audit_record(
        actor=actor,
        action=Action.DELETE_PARTICIPANT,
        study=study,
        subject=key,
        detail={
            **detail,
            "deleted": counts,
            "bonuses_kept": bonuses,
            "audit_events_scrubbed": audit_scrubbed,
        },
    )
    return counts, event
