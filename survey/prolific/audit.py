"""What every Prolific operation shares: the IDs it needs, and its audit event."""

from __future__ import annotations

from survey.dataprotection import (
    audit_record,
    identifiers_scrubbed,
    submission_hash,
    submission_label,
)
from survey.models import AuditEvent, Participant, Study
from survey.prolific.client import ProlificError


def audit_write(
    *,
    actor: str,
    action: str,
    study: Study,
    participant: Participant | None,
    detail: dict,
    submission_id: str = "",
) -> AuditEvent:
    """One audit event: the pseudonym, and the submission only as its keyed hash.

    Any raw submission or Prolific ID in the detail (Prolific's answers and error messages quote
    them) is replaced, so the log never holds one.
    """
    secrets = {submission_id, participant.session_id if participant else ""} - {""}
    replacements = {sid: submission_label(sid) for sid in secrets}
    if participant and participant.prolific_pid:
        replacements[participant.prolific_pid] = "[Prolific ID removed]"
    detail = identifiers_scrubbed(detail, replacements)
    if submission_id:
        detail = {"submission_hash": submission_hash(submission_id), **detail}
    return audit_record(
        actor=actor,
        action=action,
        study=study,
        subject=participant.pseudonym if participant else "",
        detail=detail,
    )


def study_id_of(study: Study) -> str:
    """The study's Prolific STUDY_ID; refused when the study is not linked to Prolific."""
    if not study.prolific_study_id:
        raise ProlificError(
            f"Study {study.slug!r} has no Prolific STUDY_ID: set it in the admin (Study → "
            "Prolific STUDY_ID) to the ID of the study on Prolific."
        )
    return study.prolific_study_id


def submission_id_of(participant: Participant) -> str:
    """The participant's submission ID (their SESSION_ID); refused when none is stored."""
    if not participant.session_id:
        raise ProlificError(f"Participant {participant.pseudonym} has no SESSION_ID.")
    return participant.session_id
