"""The two row locks of the participant flow, and the order they are taken in.

The participant row orders each participant's own writes. The study row is taken rarely:
to open or close the study, to count places at the arrivals of a study with a maximum
number of participants, and to decide the next batch of assignment slots
(survey.services.slots) — arrivals and question assignment otherwise never wait for each
other. Whoever holds the study row waits for no participant row, so the two cannot deadlock.
"""

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from django.db import transaction

from survey.models import Participant, Study
from survey.studies import study_of

P = ParamSpec("P")
R = TypeVar("R")
# Set on a participant read under its lock by the transaction of a participant's request
# (survey.browser.browser_participant(lock=True)): the Atomic that began that transaction.
LOCKED_BY = "_fvr_locked_by"


def _outermost_atomic() -> object | None:
    blocks = transaction.get_connection().atomic_blocks
    return blocks[0] if blocks else None


def participant_lock_note(participant: Participant) -> Participant:
    """Mark ``participant`` as read under its row lock by the transaction now open, which
    holds that lock until it ends: `locked_participant` then reads it no second time. For
    the request's own read only (a participant object passed on to later transactions, or
    changed behind its back, must be read again)."""
    setattr(participant, LOCKED_BY, _outermost_atomic())
    return participant


def participant_transaction(func: Callable[P, R]) -> Callable[P, R]:
    """A participant's write: in the caller's transaction when there is one (a participant's
    POST is one transaction, begun with the locked read of the participant), else its own.

    No savepoint of its own: the refusals these services raise (FlowError) come before any
    write, and any other error rolls the whole request back."""
    atomic = transaction.atomic(func)

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if transaction.get_connection().in_atomic_block:
            return func(*args, **kwargs)
        return atomic(*args, **kwargs)

    return wrapper


def locked_participant(participant: Participant) -> Participant:
    """Lock the participant's row for this transaction.

    See `participant_locked`. A participant this transaction already read under its lock
    (`participant_lock_note`) is returned as it is.
    """
    held = getattr(participant, LOCKED_BY, None)
    if held is not None and held is _outermost_atomic():
        return participant
    found = participant_locked(participant.pk)
    if found is None:
        raise Participant.DoesNotExist(f"participant {participant.pk} is gone")
    return found


def participant_locked(participant_id: int) -> Participant | None:
    """The participant read under its row lock, with its study (survey.studies: the study kept
    by this process, not read again per request); None when there is none.

    Only that row (`of=self`: should a join ever come back, a plain FOR UPDATE would lock the
    study row too and serialise every participant behind it), and FOR NO KEY UPDATE, which
    rows that merely refer to the participant (visits, responses, logs) do not wait for."""
    # Unordered, at most one row: first() would add an ORDER BY for nothing.
    rows = (
        Participant.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk=participant_id)
        .order_by()[:1]
    )
    found = next(iter(rows), None)
    if found is not None:
        found.study = study_of(found.study_id)
    return found


def locked_study(study_id: int) -> Study:
    """Lock the study row (see the module's docstring for who takes it)."""
    return Study.objects.select_for_update(no_key=True).get(pk=study_id)
