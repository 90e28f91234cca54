"""Submissions: listing, approval in bulk, rejection and return requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from survey.models import AuditEvent, Participant, Study
from survey.prolific.audit import audit_write, study_id_of, submission_id_of
from survey.prolific.client import ProlificClient, ProlificError
from survey.prolific.verification import submissions_verify

# The ``rejection_category`` enum of
# https://docs.prolific.com/api-reference/submissions/transition-submission (values as in
# Prolific's own CLI, github.com/prolific-oss/cli).
REJECTION_CATEGORIES: tuple[str, ...] = (
    "TOO_QUICKLY",
    "TOO_SLOWLY",
    "FAILED_INSTRUCTIONS",
    "INCOMP_LONGITUDINAL",
    "FAILED_CHECK",
    "LOW_EFFORT",
    "MALINGERING",
    "NO_CODE",
    "BAD_CODE",
    "NO_DATA",
    "UNSUPP_DEVICE",
    "OTHER",
)
MIN_REJECTION_MESSAGE = 100  # Prolific refuses shorter rejection messages
# A submission's statuses (https://docs.prolific.com/api-reference/submissions/submission-object,
# plus PARTIALLY APPROVED from the transition page). Spelled with spaces, as Prolific returns them.
SUBMISSION_STATUSES: tuple[str, ...] = (
    "RESERVED",
    "ACTIVE",
    "TIMED-OUT",
    "AWAITING REVIEW",
    "APPROVED",
    "PARTIALLY APPROVED",
    "RETURNED",
    "REJECTED",
    "SCREENED OUT",
)
# Prolific recommends at most this many IDs per bulk-approve call, sent one batch after another.
BULK_APPROVE_MAX = 1000
FAILED_CHECK_MESSAGE = (
    "Your submission is rejected because you failed two of the instructed-response attention "
    "checks in this study (each asked you to select one named photo and one named confidence "
    "rating). This follows Prolific's attention check policy."
)
# Prolific writes the message around the reasons, so a reason is a short phrase, not a letter.
NO_CONSENT_RETURN_REASONS = ["Did not give consent to take part in the study"]


def _status_name(status: str) -> str:
    """A submission status as Prolific returns it (``awaiting_review`` → ``AWAITING REVIEW``)."""
    name = " ".join(status.replace("_", " ").upper().split())
    return "TIMED-OUT" if name in {"TIMED OUT", "TIMEDOUT"} else name


def submissions_list(
    *, study: Study, status: str | None = None, client: ProlificClient | None = None
) -> list[dict]:
    """The study's submissions on Prolific, optionally only those with this status."""
    wanted = _status_name(status) if status else None
    if wanted and wanted not in SUBMISSION_STATUSES:
        raise ProlificError(
            f"Unknown submission status {status!r}: use one of Prolific's "
            + ", ".join(SUBMISSION_STATUSES)
            + " (underscores for spaces are fine)."
        )
    client = client or ProlificClient()
    rows = client.study_submissions(study_id_of(study))
    # The study's list endpoint has no status filter, so it is applied here.
    if wanted:
        rows = [r for r in rows if _status_name(str(r.get("status", ""))) == wanted]
    return rows


@dataclass
class Approval:
    """What an approval sent to Prolific, and who was left out and why (pseudonym → reason)."""

    approved: list[Participant]
    left_out: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        """The number of submissions Prolific was asked to approve."""
        return len(self.approved)

    def summary(self) -> str:
        """One line for the operator: how many were approved, who was left out and why."""
        text = f"Asked Prolific to approve {len(self.approved)} submission(s)."
        if self.left_out:
            reasons = "; ".join(f"{who}: {why}" for who, why in self.left_out.items())
            text += f" Left out {len(self.left_out)}: {reasons}."
        return text


def submissions_approve(
    *,
    study: Study,
    participants: Iterable[Participant],
    actor: str,
    client: ProlificClient | None = None,
) -> Approval:
    """Approve these participants' submissions in bulk calls (completed ones only).

    Participants with integrity flags are left out; those not yet verified are verified first
    (one read of the study's submissions) and left out if Prolific does not confirm them. The
    result names everyone left out, with the reason.
    """
    client = client or ProlificClient()
    study_id_of(study)  # refuse a study not linked to Prolific, though the body omits it
    chosen = list(participants)
    not_completed = [p.pseudonym for p in chosen if p.status != Participant.Status.COMPLETED]
    if not_completed:
        raise ProlificError(
            "Only completed participations are approved; not completed: " + ", ".join(not_completed)
        )
    if not chosen:
        raise ProlificError("No participants to approve.")
    left_out = {
        p.pseudonym: "integrity flags (" + "; ".join(map(str, p.integrity_flags)) + ")"
        for p in chosen
        if p.integrity_flags
    }
    unverified = [
        p for p in chosen if p.pseudonym not in left_out and p.session_verified_at is None
    ]
    for result in submissions_verify(
        study=study, participants=unverified, actor=actor, client=client
    ):
        if not result.ok:
            left_out[result.participant.pseudonym] = "not verified: " + "; ".join(result.problems)
    chosen = [p for p in chosen if p.pseudonym not in left_out]
    submission_ids = [submission_id_of(p) for p in chosen]
    approved: list[Participant] = []
    # Sequential batches of at most BULK_APPROVE_MAX, as Prolific recommends; each batch is
    # audited once Prolific has accepted it, so a failure leaves the earlier batches on record.
    for start in range(0, len(chosen), BULK_APPROVE_MAX):
        batch = chosen[start : start + BULK_APPROVE_MAX]
        ids = submission_ids[start : start + BULK_APPROVE_MAX]
        client.bulk_approve(submission_ids=ids)
        for p, submission_id in zip(batch, ids, strict=True):
            audit_write(
                actor=actor,
                action=AuditEvent.Action.PROLIFIC_APPROVE,
                study=study,
                participant=p,
                submission_id=submission_id,
                detail={"bulk": len(ids)},
            )
        approved += batch
    return Approval(approved=approved, left_out=left_out)


def rejection_validate(*, category: str, message: str) -> None:
    """Refuse a rejection Prolific would refuse, before any call."""
    if category not in REJECTION_CATEGORIES:
        raise ProlificError(
            f"Rejection category {category!r} is not one of Prolific's: "
            + ", ".join(REJECTION_CATEGORIES)
            + "."
        )
    if len(message.strip()) < MIN_REJECTION_MESSAGE:
        raise ProlificError(
            f"A rejection message must have at least {MIN_REJECTION_MESSAGE} characters (this "
            f"one has {len(message.strip())}): explain to the participant why, as Prolific "
            "requires."
        )


def submission_reject(
    *,
    participant: Participant,
    category: str,
    message: str,
    actor: str,
    client: ProlificClient | None = None,
) -> Any:
    """Reject one submission with an allowed category and a message of 100+ characters."""
    rejection_validate(category=category, message=message)
    client = client or ProlificClient()
    submission_id = submission_id_of(participant)
    result = client.transition(
        submission_id,
        {"action": "REJECT", "message": message.strip(), "rejection_category": category},
    )
    audit_write(
        actor=actor,
        action=AuditEvent.Action.PROLIFIC_REJECT,
        study=participant.study,
        participant=participant,
        submission_id=submission_id,
        detail={"category": category, "message": message},
    )
    return result


def submission_request_return(
    *,
    participant: Participant,
    reasons: list[str] | None = None,
    actor: str,
    client: ProlificClient | None = None,
) -> Any:
    """Ask a participant to return their submission (e.g. after declining consent)."""
    reasons = [r.strip() for r in (reasons or NO_CONSENT_RETURN_REASONS) if r.strip()]
    if not reasons:
        raise ProlificError("Give at least one reason for the return request.")
    client = client or ProlificClient()
    submission_id = submission_id_of(participant)
    result = client.request_return(submission_id, reasons)
    audit_write(
        actor=actor,
        action=AuditEvent.Action.PROLIFIC_RETURN,
        study=participant.study,
        participant=participant,
        submission_id=submission_id,
        detail={"reasons": reasons},
    )
    return result
