"""Service functions for the participant flow: every write that touches several rows.

Each function is atomic and idempotent where the participant can repeat it (reload, back,
second tab, double click): the server's stored state decides, never the request's order.

The functions live in submodules named for the part of the flow they serve (`entry`, `steps`,
`answers`, `timeouts`, `studies`; refusals in `refusals`, row locks in `locks`) and are all
importable from here: ``from survey import services``; ``services.participant_enter(…)``.
"""

from survey.services.answers import (
    ANSWER_CHANGES,
    CONFIDENCE_INVALID,
    CONFIDENCE_MISSING,
    NOTHING_SELECTED,
    PHOTO_REPEATED,
    PHOTOS_AND_NONE,
    AnswerResult,
    answer_validate,
    photos_invalid,
    response_record,
)
from survey.services.entry import (
    MADE_UP_ID_RE,
    PROLIFIC_ID_RE,
    REENTRY_SAME_BROWSER,
    REENTRY_SAME_NETWORK,
    participant_enter,
)
from survey.services.refusals import (
    REFUSAL_OVERFLOW_LOG_SECONDS,
    AnswerRefused,
    EntryRefused,
    FlowError,
    InvalidAnswer,
    NotYourQuestion,
    StudyUnavailable,
    TimedOut,
    refusal_log,
)
from survey.services.steps import (
    page_visit_record,
    participant_consent,
    participant_demographics_save,
    participant_finish,
    participant_start_questions,
    question_served,
)
from survey.services.studies import study_check_ready, study_set_status
from survey.services.timeouts import (
    participant_time_is_up,
    participant_time_out_if_due,
    participants_time_out,
)

__all__ = [
    "ANSWER_CHANGES",
    "CONFIDENCE_INVALID",
    "CONFIDENCE_MISSING",
    "MADE_UP_ID_RE",
    "NOTHING_SELECTED",
    "PHOTOS_AND_NONE",
    "PHOTO_REPEATED",
    "PROLIFIC_ID_RE",
    "REENTRY_SAME_BROWSER",
    "REENTRY_SAME_NETWORK",
    "REFUSAL_OVERFLOW_LOG_SECONDS",
    "AnswerRefused",
    "AnswerResult",
    "EntryRefused",
    "FlowError",
    "InvalidAnswer",
    "NotYourQuestion",
    "StudyUnavailable",
    "TimedOut",
    "answer_validate",
    "page_visit_record",
    "participant_consent",
    "participant_demographics_save",
    "participant_enter",
    "participant_finish",
    "participant_start_questions",
    "participant_time_is_up",
    "participant_time_out_if_due",
    "participants_time_out",
    "photos_invalid",
    "question_served",
    "refusal_log",
    "response_record",
    "study_check_ready",
    "study_set_status",
]
