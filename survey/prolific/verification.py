"""Verification: is a participant's SESSION_ID their submission of this study on Prolific?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from survey.models import AuditEvent, Participant, Study
from survey.prolific.audit import audit_write, study_id_of, submission_id_of
from survey.prolific.client import ProlificClient, ProlificError

PURGED = "the Prolific ID was purged here, so it cannot be compared"


@dataclass
class Verification:
    """Whether a participant's SESSION_ID is their submission of this study on Prolific."""

    participant: Participant
    submission_id: str
    ok: bool
    status: str = ""
    problems: list[str] = field(default_factory=list)


def _identity_problems(
    participant: Participant, *, prolific_participant: Any, prolific_study: Any, study_id: str
) -> list[str]:
    """What contradicts the arrival in Prolific's record of its submission (nothing: verified)."""
    problems = []
    if not participant.prolific_pid:
        problems.append(PURGED)
    elif prolific_participant != participant.prolific_pid:
        problems.append("the submission belongs to another Prolific participant")
    if prolific_study != study_id:
        problems.append(f"the submission is for Prolific study {prolific_study}, not {study_id}")
    return problems


def _verification_record(result: Verification, *, actor: str, answered: bool) -> Verification:
    """Store the outcome on the participant (outside any Prolific call) and audit it.

    A confirmation sets ``session_verified_at`` (kept from the first one); Prolific's answer
    contradicting the arrival clears it. Where nothing could be compared (`answered` false, or
    the Prolific ID purged here), what was stored stays.
    """
    participant = result.participant
    now = timezone.now()
    with transaction.atomic():
        rows = Participant.objects.filter(pk=participant.pk)
        if result.ok:
            rows.filter(session_verified_at__isnull=True).update(session_verified_at=now)
        elif answered and PURGED not in result.problems:
            rows.update(session_verified_at=None)
        participant.session_verified_at = rows.values_list("session_verified_at", flat=True).first()
        audit_write(
            actor=actor,
            action=AuditEvent.Action.PROLIFIC_VERIFY,
            study=participant.study,
            participant=participant,
            submission_id=result.submission_id,
            detail={"ok": result.ok, "status": result.status, "problems": result.problems},
        )
    return result


def submission_verify(
    *, participant: Participant, actor: str, client: ProlificClient | None = None
) -> Verification:
    """Check the submission behind the arrival's SESSION_ID (same participant, same study) and
    store ``session_verified_at`` when Prolific confirms it."""
    client = client or ProlificClient()
    study = participant.study
    study_id = study_id_of(study)
    submission_id = submission_id_of(participant)
    try:
        submission = client.submission(submission_id)
    except ProlificError as exc:
        if exc.status != 404:
            raise
        result = Verification(participant, submission_id, False, problems=[exc.message])
    else:
        problems = _identity_problems(
            participant,
            prolific_participant=submission.get("participant"),  # documented (not participant_id)
            prolific_study=submission.get("study_id"),
            study_id=study_id,
        )
        result = Verification(
            participant, submission_id, not problems, submission.get("status", ""), problems
        )
    return _verification_record(result, actor=actor, answered=True)


def submissions_verify(
    *,
    study: Study,
    actor: str,
    participants: Iterable[Participant] | None = None,
    client: ProlificClient | None = None,
) -> list[Verification]:
    """Verify many participants of a study with one read of its submission list.

    Default: every finished participant not yet verified. The study's list holds only its own
    submissions, so a SESSION_ID found there with the participant's Prolific ID is verified;
    one missing from it, or another participant's, is not.
    """
    client = client or ProlificClient()
    study_id = study_id_of(study)
    if participants is None:
        participants = (
            Participant.objects.filter(study=study, session_verified_at__isnull=True)
            .exclude(status=Participant.Status.ACTIVE)
            .select_related("study")
            .order_by("pk")
        )
    chosen = list(participants)
    if not chosen:
        return []
    submissions = {str(row.get("id", "")): row for row in client.study_submissions(study_id)}
    results = []
    for p in chosen:
        row = submissions.get(p.session_id) if p.session_id else None
        answered = False
        if p.study_id != study.pk:
            problems = [f"the participant took part in another study, not {study.slug!r}"]
        elif not p.session_id:
            problems = ["no SESSION_ID is stored here (purged?)"]
        elif row is None:
            answered = True
            problems = [f"Prolific lists no submission with this SESSION_ID in study {study_id}"]
        else:
            answered = True
            problems = _identity_problems(
                p,
                prolific_participant=row.get("participant_id"),  # the list's field
                prolific_study=study_id,
                study_id=study_id,
            )
        status = str(row.get("status", "")) if row else ""
        result = Verification(p, p.session_id, not problems, status, problems)
        results.append(_verification_record(result, actor=actor, answered=answered))
    return results
