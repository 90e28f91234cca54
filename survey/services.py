"""Service functions for the participant flow: every write that touches several rows.

Each function is atomic and idempotent where the participant can repeat it (reload, back,
second tab, double click): the server's stored state decides, never the request's order.
"""

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from survey.assignment import DesignError, questions_choose
from survey.faces import candidate_faces
from survey.models import (
    Assignment,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
    Study,
    plan_sha256,
    pseudonymise,
)

logger = logging.getLogger(__name__)

# Prolific's IDs (PROLIFIC_PID, STUDY_ID, and SESSION_ID, the submission's id) are MongoDB
# ObjectIds: 24 hexadecimal characters, lower case in Prolific's links and API. Upper case is
# accepted and folded to lower case, so that a link whose case was changed on the way is still
# the same person (and never a second participation under a differently-cased PID).
PROLIFIC_ID_RE = re.compile(r"[0-9a-f]{24}", re.IGNORECASE)
# Studies with `accept_any_ids` (pilots, demos): made-up IDs of safe characters, taken as given.
MADE_UP_ID_RE = re.compile(r"[A-Za-z0-9_-]{6,64}")

# Integrity flags set at entry (Participant.integrity_flags).
REENTRY_SAME_BROWSER = "reentry_same_browser"
REENTRY_SAME_NETWORK = "reentry_same_network"
# Participations that ended without completing: coming back under a new PID after one of these
# is how a declined, failed or timed-out participant would collect a completion code.
ENDED_UNCOMPLETED = [
    Participant.Status.NO_CONSENT,
    Participant.Status.FAILED_ATTENTION,
    Participant.Status.TIMED_OUT,
    Participant.Status.RETURNED,
]


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


def _validated_prolific_id(name: str, value: str | None, *, any_ids: bool = False) -> str:
    """The ID as Prolific issues it, in lower case; with `any_ids` a made-up one as given."""
    if value is None or value == "":
        raise EntryRefused(
            f"The link is missing {name}. Please open the study again from Prolific."
        )
    if any_ids:
        if not MADE_UP_ID_RE.fullmatch(value):
            raise EntryRefused(
                f"{name} is not a valid identifier (6–64 letters, digits, '-' or '_'). "
                "Please open the study again from its link."
            )
        return value
    if not PROLIFIC_ID_RE.fullmatch(value):
        # The value itself is not repeated: it may be anything, and it may be a Prolific ID.
        found = (
            f"this one has {len(value)} characters"
            if len(value) != 24
            else "this one has other characters"
        )
        raise EntryRefused(
            f"{name} is not a valid Prolific ID: Prolific's IDs are 24 characters long, made "
            f"only of the digits 0–9 and the letters a–f ({found}). Please open the study "
            "again from Prolific, with the link exactly as Prolific gives it."
        )
    return value.lower()


def participant_enter(
    *,
    study: Study,
    prolific_pid: str | None,
    study_id: str | None,
    session_id: str | None,
    user_agent: str = "",
    client_hash: str = "",
    browser_participant_id: int | None = None,
) -> Participant:
    """Admit (or resume) the participant arriving from Prolific with these URL parameters.

    ``client_hash``: the keyed hash of the client's network (survey.ratelimit.client_key),
    never the address; ``browser_participant_id``: the participant this browser's signed
    cookie names for the study, if any. Both only serve to flag a re-entry under a new PID.
    """
    any_ids = study.accept_any_ids
    pid = _validated_prolific_id("PROLIFIC_PID", prolific_pid, any_ids=any_ids)
    sid = _validated_prolific_id("STUDY_ID", study_id, any_ids=any_ids)
    session = _validated_prolific_id("SESSION_ID", session_id, any_ids=any_ids)
    if study.prolific_study_id and sid.lower() != study.prolific_study_id.strip().lower():
        raise EntryRefused(
            "This link's STUDY_ID does not belong to this study. "
            "Please open the study again from Prolific."
        )
    pseudonym = pseudonymise(pid)
    existing = (
        Participant.objects.filter(study=study, pseudonym=pseudonym).select_related("study").first()
    )
    if existing is not None:
        # Re-entry resumes (or explains, if finished or out of time).
        return participant_time_out_if_due(participant=existing)
    if study.status != Study.Status.OPEN:
        raise StudyUnavailable(
            "This study is not open at the moment. Please return it on Prolific; "
            "you will not be penalised."
        )
    try:
        with transaction.atomic():
            locked = _locked_study(study.pk)
            arrived = Participant.objects.filter(study=locked, pseudonym=pseudonym).first()
            if arrived is not None:
                return arrived  # The same person's other request got here first.
            if Participant.objects.filter(study=locked, session_id=session).exists():
                # A Prolific session belongs to one person: a second PID with it is tampering.
                raise EntryRefused(
                    "This SESSION_ID is already in use by another participant. "
                    "Please open the study again from your own Prolific link."
                )
            now = timezone.now()
            # Abandoned arrivals give their places back once their time is up (as on Prolific).
            _overdue_time_out(locked, now)
            if locked.max_participants is not None:
                taken = locked.participants.counted_for_balance(now=now).count()
                if taken >= locked.max_participants:
                    raise StudyUnavailable(
                        "All places in this study have been taken. Please return it on "
                        "Prolific; you will not be penalised."
                    )
            flags = _reentry_flags(
                locked, client_hash=client_hash, browser_participant_id=browser_participant_id
            )
            if flags:
                logger.warning("entry to %s flagged: %s", locked.slug, ", ".join(flags))
            return Participant.objects.create(
                study=locked,
                prolific_pid=pid,
                pseudonym=pseudonym,
                session_id=session,
                # PostgreSQL text cannot hold NUL: a forged header must not become a 500.
                user_agent=user_agent.replace("\x00", "")[:300],
                client_hash=client_hash[:32],
                integrity_flags=flags,
            )
    except IntegrityError:
        # Another request for the same PID won the race: resume that participation.
        return Participant.objects.get(study=study, pseudonym=pseudonym)


def _reentry_flags(
    study: Study, *, client_hash: str, browser_participant_id: int | None
) -> list[str]:
    """Why a new participant may be someone whose participation here ended uncompleted.

    Flagged, never refused: a browser or a network is not a person (a shared family computer,
    a household, a university or mobile network behind one address), and clearing cookies or
    changing network evades either check, so refusing would turn away honest people while
    stopping few of the others. The flag keeps the participant out of automatic approval and
    shows the researcher what to review against Prolific's records.
    """
    ended = Participant.objects.filter(study=study, status__in=ENDED_UNCOMPLETED)
    flags = []
    if browser_participant_id is not None and ended.filter(pk=browser_participant_id).exists():
        flags.append(REENTRY_SAME_BROWSER)
    if client_hash and ended.filter(client_hash=client_hash).exists():
        flags.append(REENTRY_SAME_NETWORK)
    return flags


def participant_time_is_up(participant: Participant, *, now: datetime | None = None) -> bool:
    """The participant is active but their study's maximum minutes since entry have passed."""
    if participant.status != Participant.Status.ACTIVE:
        return False
    limit = timedelta(minutes=participant.study.maximum_minutes)
    return (now or timezone.now()) >= participant.entered_at + limit


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
            marked += _overdue_time_out(_locked_study(study_pk), now)
    return marked


def _time_out_changes(study: Study) -> dict[str, object]:
    # Ended when the time was up (not when noticed): retention and durations count from there.
    return {
        "status": Participant.Status.TIMED_OUT,
        "step": Participant.Step.DONE,
        "finished_at": F("entered_at") + timedelta(minutes=study.maximum_minutes),
    }


def _overdue_time_out(study: Study, now: datetime) -> int:
    """Mark the study's overdue participants TIMED_OUT; the caller holds the study row lock."""
    overdue = list(
        Participant.objects.filter(study=study).overdue(now=now).values_list("pk", flat=True)
    )
    if not overdue:
        return 0
    # `status=ACTIVE` again in the UPDATE itself: a participant who finished meanwhile stays so.
    return Participant.objects.filter(pk__in=overdue, status=Participant.Status.ACTIVE).update(
        **_time_out_changes(study)
    )


@transaction.atomic
def page_visit_record(*, participant: Participant, page: str, now: datetime | None = None) -> None:
    """Store when a page was first served (later loads keep the first time)."""
    if PageVisit.objects.filter(participant=participant, page=page).exists():
        return
    # Take the participant's lock first, like every other write: inserting a visit while a
    # second tab holds that lock and inserts the same visit would otherwise deadlock.
    _locked(participant)
    PageVisit.objects.get_or_create(
        participant=participant, page=page, defaults={"served_at": now or timezone.now()}
    )


def _page_submitted(participant: Participant, page: str, now: datetime) -> None:
    visit, _ = PageVisit.objects.get_or_create(
        participant=participant, page=page, defaults={"served_at": now}
    )
    if visit.submitted_at is None:
        PageVisit.objects.filter(pk=visit.pk, submitted_at__isnull=True).update(submitted_at=now)


def _locked(participant: Participant) -> Participant:
    """Lock the participant's row for this transaction.

    Only that row (`of=self`: a plain FOR UPDATE over the join would lock the study row too and
    serialise every participant behind it), and FOR NO KEY UPDATE, which rows that merely refer
    to the participant (visits, responses, logs) do not wait for.
    """
    return (
        Participant.objects.select_for_update(of=("self",), no_key=True)
        .select_related("study")
        .get(pk=participant.pk)
    )


def _locked_study(study_id: int) -> Study:
    """Lock the study row: the one lock that orders arrivals and question assignment."""
    return Study.objects.select_for_update(no_key=True).get(pk=study_id)


@transaction.atomic
def participant_consent(*, participant: Participant, consent: bool) -> Participant:
    """Record the consent decision; declining ends the participation with NO_CONSENT."""
    p = _locked(participant)
    if p.step != Participant.Step.CONSENT:
        return p  # Already decided: the first decision stands.
    now = timezone.now()
    _page_submitted(p, Participant.Step.CONSENT, now)
    if consent:
        p.consented_at = now
        p.step = Participant.Step.DEMOGRAPHICS
    else:
        p.status = Participant.Status.NO_CONSENT
        p.step = Participant.Step.DONE
        p.completion_code = p.study.no_consent_code
        p.finished_at = now
    p.save()
    return p


@transaction.atomic
def participant_demographics_save(
    *, participant: Participant, gender: str, age_group: str
) -> Participant:
    """Store gender and age group and move on to the instructions."""
    p = _locked(participant)
    if p.step != Participant.Step.DEMOGRAPHICS:
        return p
    if gender not in Participant.Gender.values or age_group not in Participant.AgeGroup.values:
        raise InvalidAnswer("Please choose an option for gender and for age group.")
    _page_submitted(p, Participant.Step.DEMOGRAPHICS, timezone.now())
    p.gender, p.age_group = gender, age_group
    p.step = Participant.Step.INSTRUCTIONS
    p.save()
    return p


def _candidate_order(study: Study, rng: random.Random) -> list[int]:
    ranks = list(range(1, study.k + 1))
    if study.randomise_candidate_order:
        rng.shuffle(ranks)
    return ranks


@transaction.atomic
def participant_start_questions(
    *, participant: Participant, rng: random.Random | None = None
) -> Participant:
    """Assign the participant's questions (balanced across match sets) in a random order."""
    rng = rng or random.SystemRandom()
    # Lock the study row first, then the participant: one deterministic lock order for all.
    study = _locked_study(participant.study_id)
    # Participants whose time is up stop counting for balance (this one too, if so: then the
    # step below is DONE and nothing is assigned).
    _overdue_time_out(study, timezone.now())
    p = _locked(participant)
    if p.step != Participant.Step.INSTRUCTIONS:
        return p
    _page_submitted(p, Participant.Step.INSTRUCTIONS, timezone.now())
    if not p.assignments.exists():
        try:
            chosen, spare = questions_choose(study, rng)
        except DesignError as error:
            raise StudyUnavailable(
                f"This study is not set up correctly ({error}). Please return it on Prolific."
            ) from error
        rng.shuffle(chosen)
        total = len(chosen) + study.attention_checks
        # Attention checks never come first, so that the participant has seen a question.
        check_positions = set(rng.sample(range(2, total + 1), study.attention_checks))
        rows, queue = [], iter(chosen)
        for position in range(1, total + 1):
            if position in check_positions:
                rows.append(
                    Assignment(
                        participant=p,
                        match_set=rng.choice(spare),
                        position=position,
                        is_attention_check=True,
                        attention_rank=rng.randint(1, study.k),
                        attention_confidence=rng.choice([1, 2, 4, 5]),
                        candidate_order=_candidate_order(study, rng),
                    )
                )
            else:
                rows.append(
                    Assignment(
                        participant=p,
                        match_set=next(queue),
                        position=position,
                        candidate_order=_candidate_order(study, rng),
                    )
                )
        Assignment.objects.bulk_create(rows)
    p.step = Participant.Step.QUESTIONS
    p.current_position = 1
    p.save()
    return p


def assignment_served(*, assignment: Assignment, now: datetime | None = None) -> None:
    """Remember when a question was first shown (a reload keeps the first time)."""
    if assignment.served_at is None:
        now = now or timezone.now()
        updated = Assignment.objects.filter(pk=assignment.pk, served_at__isnull=True).update(
            served_at=now
        )
        if updated:
            assignment.served_at = now
        else:  # another request (a second tab) was first: its time stands
            assignment.served_at = Assignment.objects.values_list("served_at", flat=True).get(
                pk=assignment.pk
            )


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
]


@dataclass(frozen=True)
class AnswerResult:
    response: Response
    created: bool
    participant: Participant


def response_record(
    *,
    participant: Participant,
    question: Assignment | str,
    selected_photos: list[int],
    none_selected: bool,
    confidence: int,
    now: datetime | None = None,
) -> AnswerResult:
    """Store the answer to the participant's current question; the first answer stands.

    ``selected_photos`` are the photo numbers the participant saw (1 = first on the page);
    they are mapped to the recognizer's ranks here, with the question's stored display order,
    so nothing a participant posts or reads names a rank."""
    try:
        return _response_record(
            participant=participant,
            question=question,
            selected_photos=selected_photos,
            none_selected=none_selected,
            confidence=confidence,
            now=now,
        )
    except FlowError as error:
        refusal_log(error=error, study=participant.study, participant=participant)
        raise


@transaction.atomic
def _response_record(
    *,
    participant: Participant,
    question: Assignment | str,
    selected_photos: list[int],
    none_selected: bool,
    confidence: int,
    now: datetime | None,
) -> AnswerResult:
    p = _locked(participant)
    token = question.token if isinstance(question, Assignment) else str(question)
    # One query: the question (only if it is this participant's), whether it was answered, and
    # how many questions the participant has.
    assignment = (
        Assignment.objects.filter(token=token, participant_id=p.pk)
        .select_related("match_set")
        .with_question_total()
        .annotate(answered=Exists(Response.objects.filter(assignment=OuterRef("pk"))))
        .first()
    )
    if assignment is None:
        raise NotYourQuestion("This question does not belong to you.")
    if assignment.answered:
        existing = Response.objects.get(assignment=assignment)
        return AnswerResult(response=existing, created=False, participant=p)
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
    served_at = assignment.served_at or now
    (faces,) = candidate_faces(assignment.match_set)
    true_ranks = {face.rank for face in faces if face.is_true}
    attention_passed = None
    if assignment.is_attention_check:
        attention_passed = (
            ranks == [assignment.attention_rank] and confidence == assignment.attention_confidence
        )
    response = Response.objects.create(
        participant=p,
        assignment=assignment,
        selected_ranks=ranks,
        none_selected=none_selected,
        confidence=confidence,
        any_correct=bool(true_ranks.intersection(ranks)),
        attention_passed=attention_passed,
        is_fast=(now - served_at).total_seconds() < study.speeder_seconds,
        served_at=served_at,
        answered_at=now,
    )
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
    p.save(update_fields=ANSWER_CHANGES)
    return AnswerResult(response=response, created=True, participant=p)


@transaction.atomic
def participant_finish(*, participant: Participant) -> Participant:
    """Complete the participation after the debrief and issue the completion code."""
    p = _locked(participant)
    if p.step != Participant.Step.DEBRIEF:
        return p
    now = timezone.now()
    _page_submitted(p, Participant.Step.DEBRIEF, now)
    p.status = Participant.Status.COMPLETED
    p.step = Participant.Step.DONE
    p.completion_code = p.study.completion_code
    p.finished_at = now
    p.save()
    return p


def study_check_ready(*, study: Study) -> None:
    """Refuse to open a study whose match sets cannot fill every participant's questions."""
    if not study.methods:
        raise FlowError("A study needs match sets before it can open.")
    counts = Counter(study.match_sets.values_list("method", flat=True))
    short = [m for m in study.methods if counts[m] < study.questions_per_method]
    if short:
        raise FlowError(
            f"Each FVR method needs at least {study.questions_per_method} match sets "
            f"(questions per method); too few for: {', '.join(short)}."
        )


@transaction.atomic
def study_set_status(*, study: Study, status: str) -> Study:
    """Open or close a study, stamping when."""
    s = _locked_study(study.pk)
    if status == s.status:
        return s
    if status == Study.Status.OPEN:
        study_check_ready(study=s)
    s.status = status
    if status == Study.Status.OPEN:
        s.opened_at = timezone.now()
        if not s.analysis_plan_sha256:
            # Pre-registration: the plan in force at the first opening is the one reported.
            s.analysis_plan_sha256 = plan_sha256(s.analysis_plan)
            s.analysis_plan_frozen_at = s.opened_at
    elif status == Study.Status.CLOSED:
        s.closed_at = timezone.now()
    s.save()
    return s
