"""The audit log, keyed hashes of submission IDs, and raw identifiers scrubbed from what is kept."""

from collections.abc import Iterable, Mapping
from typing import Any

from survey.models import AuditEvent, Participant, ProlificBonus, Study, pseudonymise

Action = AuditEvent.Action


# A bonus row whose raw submission ID was replaced by its keyed hash (purge, deletion).
BONUS_HASH_PREFIX = "hash:"


class DataProtectionError(Exception):
    """A purge or deletion refused as asked; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def actor_of(user: Any) -> str:
    """The audit actor for a user: the username ('unknown' when no user was given)."""
    if user is None:
        return "unknown"
    if getattr(user, "is_authenticated", False):
        return user.get_username()
    return "anonymous"


def audit_record(
    *,
    actor: str,
    action: str,
    study: Study | None = None,
    subject: str = "",
    detail: dict | None = None,
) -> AuditEvent:
    """Append one event to the audit log (`subject` is a pseudonym, never a raw Prolific ID)."""
    return AuditEvent.objects.create(
        actor=actor[:150], action=action, study=study, subject=subject[:64], detail=detail or {}
    )


def submission_hash(submission_id: str) -> str:
    """Keyed hash of a Prolific submission ID (SESSION_ID): what the audit log keeps instead.

    HMAC-SHA256 with FVR_PSEUDONYM_KEY, 16 hex characters, as the participant pseudonym: whoever
    holds the key and a submission ID can find its events; the log alone never gives the ID.
    """
    return pseudonymise(submission_id)


def submission_label(submission_id: str) -> str:
    """What stands for a submission ID inside audited text: ``[submission <hash>]``."""
    return f"[submission {submission_hash(submission_id)}]"


def identifiers_scrubbed(value: Any, replacements: Mapping[str, str]) -> Any:
    """A JSON-like value with every occurrence of these identifiers replaced, keys included."""
    if isinstance(value, str):
        for identifier, replacement in replacements.items():
            if identifier:
                value = value.replace(identifier, replacement)
        return value
    if isinstance(value, dict):
        return {
            identifiers_scrubbed(str(k), replacements): identifiers_scrubbed(v, replacements)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [identifiers_scrubbed(v, replacements) for v in value]
    return value


def _submission_replacements(
    submission_ids: Iterable[str], prolific_pids: Iterable[str] = ()
) -> dict[str, str]:
    replacements = {sid: submission_label(sid) for sid in submission_ids if sid}
    replacements.update({pid: "[Prolific ID removed]" for pid in prolific_pids if pid})
    return replacements


def audit_detail_scrubbed(detail: Any, replacements: Mapping[str, str]) -> Any:
    """An audit detail without raw submission or Prolific IDs (rows written before issue 15
    held ``submission_id``: it becomes ``submission_hash``)."""
    if isinstance(detail, dict) and isinstance(detail.get("submission_id"), str):
        detail = dict(detail)
        raw = detail.pop("submission_id")
        if raw:
            detail = {"submission_hash": submission_hash(raw), **detail}
    return identifiers_scrubbed(detail, replacements)


def audit_events_scrub(*, participants: Iterable[Participant]) -> int:
    """Remove these participants' submission and Prolific IDs from audit rows already written.

    The Prolific operations audit a keyed hash only, but rows written before that kept the raw
    submission ID; purging and deleting call this, so no copy outlives the participant's own.
    Returns the number of rows changed.
    """
    people = [p for p in participants if p.session_id or p.prolific_pid]
    if not people:
        return 0
    replacements = _submission_replacements(
        [p.session_id for p in people], [p.prolific_pid for p in people]
    )
    events = AuditEvent.objects.filter(
        study__in={p.study_id for p in people}, action__startswith="prolific_"
    )
    changed = []
    for event in events.only("pk", "subject", "detail"):
        detail = audit_detail_scrubbed(event.detail, replacements)
        subject = identifiers_scrubbed(event.subject, replacements)[:64]
        if detail != event.detail or subject != event.subject:
            event.detail, event.subject = detail, subject
            changed.append(event)
    AuditEvent.objects.bulk_update(changed, ["detail", "subject"], batch_size=500)
    return len(changed)


def bonus_submissions_hash(*, bonuses: Iterable[ProlificBonus]) -> int:
    """Replace the raw submission ID of these bonus rows by its keyed hash (``hash:…``).

    The row stays the payment record (amount, state, Prolific's bonus ID, when it was paid);
    the hash still matches a submission ID someone holds, and stays unique per study.
    """
    changed = []
    for bonus in bonuses:
        if not bonus.submission_id or bonus.submission_id.startswith(BONUS_HASH_PREFIX):
            continue
        replacements = _submission_replacements([bonus.submission_id])
        bonus.error = identifiers_scrubbed(bonus.error, replacements)
        bonus.reason = identifiers_scrubbed(bonus.reason, replacements)[:200]
        bonus.submission_id = BONUS_HASH_PREFIX + submission_hash(bonus.submission_id)
        changed.append(bonus)
    ProlificBonus.objects.bulk_update(changed, ["submission_id", "error", "reason"])
    return len(changed)


def study_get(*, slug: str) -> Study:
    """The study with this slug, or an error listing the known slugs."""
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        known = ", ".join(Study.objects.order_by("slug").values_list("slug", flat=True)) or "none"
        raise DataProtectionError(f"No study with slug '{slug}'. Known studies: {known}.")
    return study


def exports_audit(*, actor: str, studies: list[Study], via: str, fmt: str) -> None:
    """Record that `actor` exported the responses of these studies."""
    for study in studies:
        audit_record(
            actor=actor,
            action=Action.EXPORT,
            study=study,
            detail={"via": via, "format": fmt},
        )
