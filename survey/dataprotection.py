"""Data protection: the audit log, purging raw Prolific IDs, and erasing one person's data.

What is stored, where, for how long and how to delete it: DATA_PROTECTION.md.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from survey.models import AuditEvent, Participant, ProlificBonus, Study, pseudonymise

Action = AuditEvent.Action
Status = Participant.Status
# How many pseudonyms an error message lists before "and N more".
LISTED = 5
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


def _listed(pseudonyms: list[str]) -> str:
    shown = ", ".join(pseudonyms[:LISTED])
    more = len(pseudonyms) - LISTED
    return f"{shown} and {more} more" if more > 0 else shown


# --- purging raw Prolific IDs ------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    """What a purge removed (or would remove, on a dry run), per study slug."""

    purged: dict[str, int]
    timed_out: dict[str, int]
    dry_run: bool
    forced: bool
    events: list[AuditEvent] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.purged.values())


def _in_progress(participants: list[Participant], now: datetime) -> list[Participant]:
    """Active participants still inside their study's time limit (they may yet finish)."""
    return [
        p
        for p in participants
        if p.status == Status.ACTIVE
        and p.entered_at + timedelta(minutes=p.study.maximum_minutes) > now
    ]


def participant_ids_purge(
    *,
    study: Study | None,
    actor: str,
    older_than: timedelta | None = None,
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeResult:
    """Blank the raw Prolific IDs of a study's (or, with study=None, every study's) participants,
    with their Prolific submission IDs (SESSION_ID) and browser user agents; their paid bonus
    rows and audit events keep the submission ID's keyed hash only.

    The HMAC pseudonym stays, so exports, analyses and the one-participation-per-PID rule keep
    working. Refused, with nothing changed, while a selected participant is still in progress
    (active and inside the study's time limit) or has a Prolific bonus not yet paid — both may
    still need the ID — unless `force`. Active participants past the time limit have timed out
    on Prolific and are purged like finished ones. With `older_than`, only participants who
    finished (or, if they never did, entered) longer ago than that are selected.
    """
    now = now or timezone.now()
    selected = Participant.objects.exclude(prolific_pid="").select_related("study")
    if study is not None:
        selected = selected.filter(study=study)
    if older_than is not None:
        selected = selected.annotate(last_seen=Coalesce("finished_at", "entered_at")).filter(
            last_seen__lte=now - older_than
        )
    with transaction.atomic():
        participants = list(selected.select_for_update(of=("self",)).order_by("study_id", "pk"))
        in_progress = _in_progress(participants, now)
        unpaid_ids = set(
            ProlificBonus.objects.filter(participant__in=participants)
            .exclude(state=ProlificBonus.State.PAID)
            .values_list("participant_id", flat=True)
        )
        unpaid = [p for p in participants if p.pk in unpaid_ids]
        if (in_progress or unpaid) and not force:
            problems = []
            if in_progress:
                problems.append(
                    f"{len(in_progress)} participant(s) are still taking part (active and "
                    f"within the study's time limit): {_listed([p.pseudonym for p in in_progress])}"
                )
            if unpaid:
                problems.append(
                    f"{len(unpaid)} participant(s) have a Prolific bonus not yet paid: "
                    f"{_listed([p.pseudonym for p in unpaid])}"
                )
            raise DataProtectionError(
                "Nothing was purged: "
                + "; ".join(problems)
                + ". Their Prolific IDs may still be needed for approval or payment. Wait until "
                "they finish (or time out) and bonuses are paid, or pass --force (force=True) "
                "to purge them anyway."
            )
        purged: Counter[str] = Counter(p.study.slug for p in participants)
        # Marked TIMED_OUT, or active past the time limit and not marked yet.
        timed_out: Counter[str] = Counter(
            p.study.slug
            for p in participants
            if p.status == Status.TIMED_OUT or (p.status == Status.ACTIVE and p not in in_progress)
        )
        events: list[AuditEvent] = []
        if not dry_run and participants:
            # The submission ID (SESSION_ID) and the user agent go with the Prolific ID: both
            # served approval and support, and a submission ID leads back to the person through
            # Prolific. A paid bonus stays the payment record under the submission's keyed hash;
            # audit rows written before the log kept hashes only lose the raw IDs too.
            # The network hash only served re-entry flags while the study ran.
            Participant.objects.filter(pk__in=[p.pk for p in participants]).update(
                prolific_pid="", session_id="", user_agent="", client_hash=""
            )
            paid = list(
                ProlificBonus.objects.filter(
                    participant__in=participants, state=ProlificBonus.State.PAID
                )
            )
            bonus_submissions_hash(bonuses=paid)
            bonuses_hashed = Counter(b.study_id for b in paid)
            audit_scrubbed: dict[str, int] = {}
            for slug in purged:
                of_study = [p for p in participants if p.study.slug == slug]
                audit_scrubbed[slug] = audit_events_scrub(participants=of_study)
            by_study = {p.study.slug: p.study for p in participants}
            for slug, count in sorted(purged.items()):
                events.append(
                    audit_record(
                        actor=actor,
                        action=Action.PURGE_IDS,
                        study=by_study[slug],
                        detail={
                            "participants": count,
                            "timed_out": timed_out[slug],
                            "in_progress_forced": sum(p.study.slug == slug for p in in_progress),
                            "unpaid_bonus_forced": sum(p.study.slug == slug for p in unpaid),
                            "older_than_days": (
                                None if older_than is None else older_than.total_seconds() / 86400
                            ),
                            "scope": "study" if study is not None else "all studies",
                            "bonus_submissions_hashed": bonuses_hashed[by_study[slug].pk],
                            "audit_events_scrubbed": audit_scrubbed[slug],
                        },
                    )
                )
    return PurgeResult(
        purged=dict(purged),
        timed_out=dict(timed_out),
        dry_run=dry_run,
        forced=force,
        events=events,
    )


def retention_period() -> timedelta:
    """How long raw Prolific IDs are kept after a participant finished (FVR_RETENTION_DAYS)."""
    return timedelta(days=settings.FVR_RETENTION_DAYS)


# --- erasing one person's data -----------------------------------------------------------


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
        counts = {
            "assignments": participant.assignments.count(),
            "responses": participant.responses.count(),
            "page_visits": participant.visits.count(),
            "refused_requests": participant.refusedrequest_set.count(),
        }
        bonuses = participant.bonuses.count()
        status = participant.status
        event = None
        if not dry_run:
            # The bonus rows stay as payment records, unlinked and under the submission's keyed
            # hash; older audit rows lose any raw submission or Prolific ID they still hold.
            bonus_submissions_hash(bonuses=participant.bonuses.all())
            audit_scrubbed = audit_events_scrub(participants=[participant])
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
                    "reason": _reason_scrubbed(
                        reason.strip(), participant.prolific_pid, prolific_pid or ""
                    ),
                    "identified_by": "prolific_pid" if prolific_pid is not None else "pseudonym",
                    "status": status,
                    "deleted": counts,
                    "bonuses_kept": bonuses,
                    "audit_events_scrubbed": audit_scrubbed,
                },
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


def exports_audit(*, actor: str, studies: list[Study], via: str, fmt: str) -> None:
    """Record that `actor` exported the responses of these studies."""
    for study in studies:
        audit_record(
            actor=actor,
            action=Action.EXPORT,
            study=study,
            detail={"via": via, "format": fmt},
        )
