"""Purging raw Prolific IDs once they are no longer needed (FVR_RETENTION_DAYS)."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from survey.dataprotection.audit import (
    Action,
    DataProtectionError,
    audit_events_scrub,
    audit_record,
    bonus_submissions_hash,
)
from survey.models import AuditEvent, Participant, ProlificBonus, Study

Status = Participant.Status

# How many pseudonyms an error message lists before "and N more".
LISTED = 5


def _listed(pseudonyms: list[str]) -> str:
    shown = ", ".join(pseudonyms[:LISTED])
    more = len(pseudonyms) - LISTED
    return f"{shown} and {more} more" if more > 0 else shown


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
        if p.status == Status.ACTIVE and p.entered_at + p.study.time_limit > now
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
        unpaid = _unpaid_bonus_holders(participants)
        if (in_progress or unpaid) and not force:
            raise _purge_refusal(in_progress, unpaid)
        purged: Counter[str] = Counter(p.study.slug for p in participants)
        # Marked TIMED_OUT, or active past the time limit and not marked yet.
        timed_out: Counter[str] = Counter(
            p.study.slug
            for p in participants
            if p.status == Status.TIMED_OUT or (p.status == Status.ACTIVE and p not in in_progress)
        )
        events: list[AuditEvent] = []
        if not dry_run and participants:
            events = _purge_apply(
                participants,
                actor=actor,
                purged=purged,
                timed_out=timed_out,
                forced={"in_progress_forced": in_progress, "unpaid_bonus_forced": unpaid},
                older_than=older_than,
                scope="study" if study is not None else "all studies",
            )
    return PurgeResult(
        purged=dict(purged),
        timed_out=dict(timed_out),
        dry_run=dry_run,
        forced=force,
        events=events,
    )


def _unpaid_bonus_holders(participants: list[Participant]) -> list[Participant]:
    """The participants with a Prolific bonus not yet paid."""
    unpaid_ids = set(
        ProlificBonus.objects.filter(participant__in=participants)
        .exclude(state=ProlificBonus.State.PAID)
        .values_list("participant_id", flat=True)
    )
    return [p for p in participants if p.pk in unpaid_ids]


def _purge_refusal(
    in_progress: list[Participant], unpaid: list[Participant]
) -> DataProtectionError:
    """Why nothing is purged: who is still taking part, and who has a bonus not yet paid."""
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
    return DataProtectionError(
        "Nothing was purged: "
        + "; ".join(problems)
        + ". Their Prolific IDs may still be needed for approval or payment. Wait until "
        "they finish (or time out) and bonuses are paid, or pass --force (force=True) "
        "to purge them anyway."
    )


def _purge_apply(
    participants: list[Participant],
    *,
    actor: str,
    purged: Counter[str],
    timed_out: Counter[str],
    forced: dict[str, list[Participant]],
    older_than: timedelta | None,
    scope: str,
) -> list[AuditEvent]:
    """Blank the participants' identifiers and audit the purge, one event per study."""
    bonuses_hashed, audit_scrubbed = _identifiers_blank(participants, purged)
    by_study = {p.study.slug: p.study for p in participants}
    events = []
    for slug, count in sorted(purged.items()):
        detail = {
            "participants": count,
            "timed_out": timed_out[slug],
            **{key: sum(p.study.slug == slug for p in who) for key, who in forced.items()},
            "older_than_days": (None if older_than is None else older_than.total_seconds() / 86400),
            "scope": scope,
            "bonus_submissions_hashed": bonuses_hashed[by_study[slug].pk],
            "audit_events_scrubbed": audit_scrubbed[slug],
        }
        events.append(
            audit_record(actor=actor, action=Action.PURGE_IDS, study=by_study[slug], detail=detail)
        )
    return events


def _identifiers_blank(
    participants: list[Participant], purged: Counter[str]
) -> tuple[Counter[int], dict[str, int]]:
    """Blank the participants' identifiers; return the paid bonuses hashed per study id and the
    audit events scrubbed per study slug."""
    # The submission ID (SESSION_ID) and the user agent go with the Prolific ID: both served
    # approval and support, and a submission ID leads back to the person through Prolific. A
    # paid bonus stays the payment record under the submission's keyed hash; audit rows written
    # before the log kept hashes only lose the raw IDs too. The network hash only served
    # re-entry flags while the study ran.
    Participant.objects.filter(pk__in=[p.pk for p in participants]).update(
        prolific_pid="", session_id="", user_agent="", client_hash=""
    )
    paid = list(
        ProlificBonus.objects.filter(participant__in=participants, state=ProlificBonus.State.PAID)
    )
    bonus_submissions_hash(bonuses=paid)
    bonuses_hashed = Counter(b.study_id for b in paid)
    audit_scrubbed: dict[str, int] = {}
    for slug in purged:
        of_study = [p for p in participants if p.study.slug == slug]
        audit_scrubbed[slug] = audit_events_scrub(participants=of_study)
    return bonuses_hashed, audit_scrubbed


def retention_period() -> timedelta:
    """How long raw Prolific IDs are kept after a participant finished (FVR_RETENTION_DAYS)."""
    return timedelta(days=settings.FVR_RETENTION_DAYS)
