"""Time limits: a participant whose study's maximum minutes since entry have passed times out."""

import time
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from survey.models import Participant, Study
from survey.services.locks import locked_study


def participant_time_is_up(participant: Participant, *, now: datetime | None = None) -> bool:
    """The participant is active but their study's maximum minutes since entry have passed."""
    if participant.status != Participant.Status.ACTIVE:
        return False
    return (now or timezone.now()) >= participant.entered_at + participant.study.time_limit


def participant_time_out_if_due(
    *, participant: Participant, now: datetime | None = None
) -> Participant:
    """The participant, marked TIMED_OUT first if their time is up (no query if it is not).

    Called on each participant request (survey.views.participant_page), so that a page or an
    answer after the time is up is refused and stores nothing.
    """
    if not participant_time_is_up(participant, now=now):
        return participant
    study = participant.study
    Participant.objects.filter(pk=participant.pk, status=Participant.Status.ACTIVE).update(
        **_time_out_changes(study)
    )
    # Whatever stands now (another request may have finished the participation first).
    return Participant.objects.select_related("study").get(pk=participant.pk)


def participants_time_out(*, study: Study | None = None, now: datetime | None = None) -> int:
    """Mark active participants past their study's maximum minutes TIMED_OUT (of one study, or
    of all); return how many. For a management command or the admin: arrivals, question
    assignment and the participant's own requests also do it as they go."""
    now = now or timezone.now()
    if study is not None:
        studies = [study.pk]
    else:
        studies = list(
            Participant.objects.overdue(now=now).order_by().values_list("study_id", flat=True)
        )
    marked = 0
    for study_pk in sorted(set(studies)):
        with transaction.atomic():
            marked += overdue_time_out(locked_study(study_pk), now)
    return marked


def _time_out_changes(study: Study) -> dict[str, object]:
    # Ended when the time was up (not when noticed): retention and durations count from there.
    return {
        "status": Participant.Status.TIMED_OUT,
        "step": Participant.Step.DONE,
        "finished_at": F("entered_at") + study.time_limit,
    }


# Arrivals mark a study's overdue participants at most this often per process: the marking
# is a scan of the study's active participants, and nothing waits on it — a place, a slot
# and a re-entry flag already count a participant whose time is up as gone, marked or not
# (ParticipantQuerySet.counted_for_balance, .released), and their own next request marks them.
ARRIVAL_MARKING_SECONDS = 30.0
_marked_at: dict[int, float] = {}  # study pk -> time.monotonic() of this process's last marking


def overdue_time_out_now_and_then(study: Study, now: datetime) -> int:
    """`overdue_time_out` for an arrival (``skip_locked``), at most once per
    `ARRIVAL_MARKING_SECONDS` per study in this process; 0 when it is not time yet."""
    clock = time.monotonic()
    last = _marked_at.get(study.pk)
    if last is not None and clock - last < ARRIVAL_MARKING_SECONDS:
        return 0
    _marked_at[study.pk] = clock
    return overdue_time_out(study, now, skip_locked=True)


def arrival_marking_forget() -> None:
    """Let the next arrival mark overdue participants whenever it comes (tests)."""
    _marked_at.clear()


def overdue_time_out(study: Study, now: datetime, *, skip_locked: bool = False) -> int:
    """Mark the study's overdue participants TIMED_OUT, in the caller's transaction.

    Under the study row's lock every overdue participant is marked; with ``skip_locked`` (an
    arrival, which takes no study lock) those whose rows another transaction holds are left
    to it (their own request marks them, or another arrival does), so that concurrent
    arrivals never wait for each other here."""
    overdue = Participant.objects.filter(study=study).overdue(now=now)
    if skip_locked:
        overdue = overdue.select_for_update(of=("self",), no_key=True, skip_locked=True)
    pks = list(overdue.values_list("pk", flat=True))
    if not pks:
        return 0
    # `status=ACTIVE` again in the UPDATE itself: a participant who finished meanwhile stays so.
    return Participant.objects.filter(pk__in=pks, status=Participant.Status.ACTIVE).update(
        **_time_out_changes(study)
    )
