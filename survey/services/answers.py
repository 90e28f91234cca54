"""Answers: one answer's rules, and the answer to the current question recorded once."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from survey.faces import candidate_faces
from survey.models import Assignment, Participant, Response
from survey.questions import question_with_token, questions_at, questions_forget
from survey.services.locks import locked_participant, participant_transaction
from survey.services.refusals import (
    AnswerRefused,
    FlowError,
    InvalidAnswer,
    NotYourQuestion,
    TimedOut,
    refusal_log,
)
from survey.services.timeouts import participant_time_is_up

# What an answer is told when it breaks a rule of `answer_validate`: the one copy of these texts
# (survey.forms and the question page's script show them too).
CONFIDENCE_MISSING = "Please rate how confident you are."
CONFIDENCE_INVALID = "Confidence must be a whole number from 1 to 5."
PHOTO_REPEATED = "Each photo can be selected only once."
PHOTOS_AND_NONE = "Choose either photos or 'none of these', not both."
NOTHING_SELECTED = "Select at least one photo, or 'none of these'."


def photos_invalid(k: int) -> str:
    """The refusal of a photo number that is not one of the K shown."""
    return f"Selected photos must be numbered 1 to {k}."


def answer_validate(
    *, k: int, selected_photos: list[int], none_selected: bool, confidence: int
) -> list[int]:
    """Check one answer's rules; return the selected photo numbers (1..K as shown) sorted.

    The one place the rules live: the answer form (survey.forms) calls it too."""
    if not isinstance(confidence, int) or isinstance(confidence, bool) or not 1 <= confidence <= 5:
        raise InvalidAnswer(CONFIDENCE_INVALID)
    photos = sorted(set(selected_photos))
    if len(photos) != len(selected_photos):
        raise InvalidAnswer(PHOTO_REPEATED)
    for photo in photos:
        if not isinstance(photo, int) or isinstance(photo, bool) or not 1 <= photo <= k:
            raise InvalidAnswer(photos_invalid(k))
    if none_selected and photos:
        raise InvalidAnswer(PHOTOS_AND_NONE)
    if not none_selected and not photos:
        raise InvalidAnswer(NOTHING_SELECTED)
    return photos


# What an answer can change on its participant (saved alone: a smaller UPDATE).
ANSWER_CHANGES = [
    "attention_failures",
    "status",
    "step",
    "completion_code",
    "finished_at",
    "current_position",
    "current_served_at",
]


@dataclass(frozen=True)
class AnswerResult:
    response: Response
    created: bool
    participant: Participant
    # Questions read for the answer, by position, with their match sets and `question_total`:
    # the one answered and the two after it, shown next without another query.
    questions: dict[int, Assignment]


def response_record(
    *,
    participant: Participant,
    question: Assignment | str,
    selected_photos: list[int],
    none_selected: bool,
    confidence: int,
    now: datetime | None = None,
    shown_next: bool = False,
) -> AnswerResult:
    """Store the answer to the participant's current question; the first answer stands.

    ``selected_photos`` are the photo numbers the participant saw (1 = first on the page);
    they are mapped to the recognizer's ranks here, with the question's stored display order,
    so nothing a participant posts or reads names a rank. ``shown_next``: the reply shows the
    next question at once (the page's script), so it is served now, in the same UPDATE."""
    try:
        return _response_record(
            participant=participant,
            question=question,
            selected_photos=selected_photos,
            none_selected=none_selected,
            confidence=confidence,
            now=now,
            shown_next=shown_next,
        )
    except FlowError as error:
        refusal_log(error=error, study=participant.study, participant=participant)
        raise


@participant_transaction
def _response_record(
    *,
    participant: Participant,
    question: Assignment | str,
    selected_photos: list[int],
    none_selected: bool,
    confidence: int,
    now: datetime | None,
    shown_next: bool,
) -> AnswerResult:
    p = locked_participant(participant)
    token = str(question.token if isinstance(question, Assignment) else question)
    questions = _questions_of(p, token)
    assignment = next((a for a in questions.values() if str(a.token) == token), None)
    if assignment is None:
        raise NotYourQuestion("This question does not belong to you.")
    existing = _answer_stored(p, assignment)
    if existing is not None:
        return AnswerResult(response=existing, created=False, participant=p, questions=questions)
    _answer_allowed(p, assignment, now=now)
    study = p.study
    photos = answer_validate(
        k=study.k,
        selected_photos=selected_photos,
        none_selected=none_selected,
        confidence=confidence,
    )
    order = assignment.display_order(study.k)
    ranks = sorted(order[photo - 1] for photo in photos)
    now = now or timezone.now()
    response = _response_create(
        p, assignment, ranks=ranks, none_selected=none_selected, confidence=confidence, now=now
    )
    _participant_advance(
        p, assignment, attention_passed=response.attention_passed, now=now, shown_next=shown_next
    )
    if p.step != Participant.Step.QUESTIONS:
        questions_forget(p)
    return AnswerResult(response=response, created=True, participant=p, questions=questions)


def _questions_of(participant: Participant, token: str) -> dict[int, Assignment]:
    """By position, with their match sets: the question with this token if it is the
    participant's, and the two after their current one (what the reply shows next and
    preloads). From the questions this process keeps (survey.questions): no query but the
    first of the participant in the process."""
    after = participant.current_position
    questions = questions_at(participant, after + 1, after + 2)
    answered = question_with_token(participant, token)
    if answered is not None:
        questions[answered.position] = answered
    return questions


def _answer_stored(p: Participant, assignment: Assignment) -> Response | None:
    """The answer already stored to this question, if any. Answering moves the participant
    past the question in the same transaction, so a question the participant is still on
    has none (no query then)."""
    if p.step == Participant.Step.QUESTIONS and assignment.position >= p.current_position:
        return None
    return Response.objects.filter(assignment=assignment).first()


def _answer_allowed(p: Participant, assignment: Assignment, *, now: datetime | None) -> None:
    """Refuse an answer out of time, after the questions, or to another question than the
    current one."""
    if participant_time_is_up(p, now=now):
        # Not marked here: the refusal rolls this transaction back (the pages mark it).
        raise TimedOut(p.study)
    if p.is_finished or p.step != Participant.Step.QUESTIONS:
        raise AnswerRefused("You have already finished the questions; no more answers are taken.")
    if assignment.position != p.current_position:
        raise AnswerRefused(
            f"This is question {assignment.position}, but you are on question "
            f"{p.current_position}. Please answer the question shown on your screen."
        )


def _response_create(
    p: Participant,
    assignment: Assignment,
    *,
    ranks: list[int],
    none_selected: bool,
    confidence: int,
    now: datetime,
) -> Response:
    """Store the answer (as the recognizer's ranks), scored against the match set's truth."""
    served_at = p.current_served_at or now  # the current question's (_answer_allowed)
    (faces,) = candidate_faces(assignment.match_set)
    true_ranks = {face.rank for face in faces if face.is_true}
    attention_passed = None
    if assignment.is_attention_check:
        attention_passed = (
            ranks == [assignment.attention_rank] and confidence == assignment.attention_confidence
        )
    return Response.objects.create(
        participant=p,
        assignment=assignment,
        selected_ranks=ranks,
        none_selected=none_selected,
        confidence=confidence,
        any_correct=bool(true_ranks.intersection(ranks)),
        attention_passed=attention_passed,
        is_fast=(now - served_at).total_seconds() < p.study.speeder_seconds,
        served_at=served_at,
        answered_at=now,
    )


def _participant_advance(
    p: Participant,
    assignment: Assignment,
    *,
    attention_passed: bool | None,
    now: datetime,
    shown_next: bool,
) -> None:
    """Move the participant on after an answer: to the next question (served now when the
    reply shows it), to the debrief, or out after one failed attention check too many."""
    study = p.study
    p.current_served_at = None
    if attention_passed is False:
        p.attention_failures += 1
    if p.attention_failures > study.attention_failures_allowed:
        p.status = Participant.Status.FAILED_ATTENTION
        p.step = Participant.Step.DONE
        p.completion_code = study.failed_attention_code
        p.finished_at = now
    elif assignment.position >= assignment.question_total:
        p.step = Participant.Step.DEBRIEF
    else:
        p.current_position = assignment.position + 1
        p.current_served_at = now if shown_next else None
    # An UPDATE of these columns (save(update_fields=…) would do the same, with more work).
    Participant.objects.filter(pk=p.pk).update(
        **{field: getattr(p, field) for field in ANSWER_CHANGES}
    )
