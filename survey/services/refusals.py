"""What the server refuses a participant (`FlowError` and its kinds), and the bounded log of
refusals.
"""

import logging

from django.conf import settings
from django.utils import timezone

from survey.models import Participant, RefusedRequest, Study

logger = logging.getLogger(__name__)


class FlowError(Exception):
    """A participant action the server refuses; `status` is the HTTP status to answer with."""

    status = 400
    reason = "bad_request"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class EntryRefused(FlowError):
    reason = "entry_refused"


class StudyUnavailable(FlowError):
    status = 403
    reason = "study_unavailable"


class AnswerRefused(FlowError):
    status = 409
    reason = "answer_refused"


class NotYourQuestion(FlowError):
    status = 403
    reason = "not_your_question"


class InvalidAnswer(FlowError):
    reason = "invalid_answer"


class TimedOut(FlowError):
    """The participant's time (the study's maximum minutes since entry) has run out."""

    status = 410
    reason = "timed_out"

    def __init__(self, study: Study) -> None:
        super().__init__(
            f"Your time for this study has run out: it allows {study.maximum_minutes} minutes "
            "from when you opened it. Your answers so far are kept, but no more can be given. "
            "Please return the study on Prolific (open it there and choose “Stop without "
            "completing”)."
        )


# Refusals over the caps of `refusal_log` are logged at most once a minute per participant (or
# study), per process: key → (when last logged, how many were not logged since).
REFUSAL_OVERFLOW_LOG_SECONDS = 60.0
_refusal_overflow: dict[str, tuple[float, int]] = {}


def refusal_log(
    *, error: FlowError, study: Study | None = None, participant: Participant | None = None
) -> None:
    """Keep a record of a refused participant action (and log it), within bounds.

    At most FVR_REFUSALS_PER_PARTICIPANT rows per participant and, for refusals before
    admission, FVR_ANONYMOUS_REFUSALS_PER_HOUR per study and clock hour, so that a hostile
    client cannot fill the database; past either, the refusal is answered as before but only
    logged, rate-limited. (The count is read before the insert: concurrent refusals may pass a
    cap by a few rows.)
    """
    now = timezone.now()
    if participant is not None:
        kept = RefusedRequest.objects.filter(participant=participant)
        cap, scope = settings.FVR_REFUSALS_PER_PARTICIPANT, f"participant {participant.pseudonym}"
    else:
        hour = now.replace(minute=0, second=0, microsecond=0)
        kept = RefusedRequest.objects.filter(study=study, participant=None, at__gte=hour)
        cap = settings.FVR_ANONYMOUS_REFUSALS_PER_HOUR
        scope = f"study {study.slug if study else '-'} (before admission, this hour)"
    if kept.count() >= cap:
        _refusal_overflow_log(scope=scope, cap=cap, reason=error.reason, now=now.timestamp())
        return
    logger.warning(
        "refused %s study=%s participant=%s: %s",
        error.reason,
        study.slug if study else "-",
        participant.pseudonym if participant else "-",
        error.message,
    )
    RefusedRequest.objects.create(
        study=study, participant=participant, reason=error.reason, detail=error.message[:2000]
    )


def _refusal_overflow_log(*, scope: str, cap: int, reason: str, now: float) -> None:
    """Log a refusal past the cap: the first at once, then one line a minute with a count."""
    last, unlogged = _refusal_overflow.get(scope, (None, 0))
    if last is not None and now - last < REFUSAL_OVERFLOW_LOG_SECONDS:
        _refusal_overflow[scope] = (last, unlogged + 1)
        return
    if len(_refusal_overflow) > 10_000:  # a bound on this process's memory too
        _refusal_overflow.clear()
    _refusal_overflow[scope] = (now, 0)
    logger.warning(
        "refused %s for %s: refusal log full (%d rows), not stored; %d more not logged before",
        reason,
        scope,
        cap,
        unlogged,
    )
