"""The participant's steps before and after the questions: pages served and submitted, consent,
demographics, the questions assigned, the finish.
"""

import random
from datetime import datetime

from django.utils import timezone

from survey.assignment import DesignError
from survey.models import Assignment, MatchSet, PageVisit, Participant, Study
from survey.services.locks import locked_participant, participant_transaction
from survey.services.refusals import InvalidAnswer, StudyUnavailable
from survey.services.slots import slot_claim, slot_settle


def page_visit_record(*, participant: Participant, page: str, now: datetime | None = None) -> None:
    """Store when a page was first served (later loads keep the first time): one statement.

    One INSERT … ON CONFLICT DO NOTHING, on its own (a transaction of one statement), without
    the participant's lock: a visit stored meanwhile (a reload, a second tab, the page's own
    submission under the lock) makes it insert nothing and keeps the first time. It holds no
    lock another request waits for while it waits itself (the participant row's key share,
    which FOR NO KEY UPDATE does not block), so it cannot deadlock with the participant's
    writes."""
    PageVisit.objects.bulk_create(
        [PageVisit(participant=participant, page=page, served_at=now or timezone.now())],
        ignore_conflicts=True,
    )


def _page_submitted(participant: Participant, page: str, now: datetime) -> None:
    """Store when a page was first submitted, under the participant's lock (the caller's).

    One UPDATE when its visit is stored (the page was served first, as it almost always is);
    a page submitted without one (a form posted from elsewhere) is stored as served then."""
    visits = PageVisit.objects.filter(participant=participant, page=page)
    if visits.filter(submitted_at__isnull=True).update(submitted_at=now):
        return
    # None unsubmitted: either submitted before (the conflict keeps the first times) or
    # never served.
    PageVisit.objects.bulk_create(
        [PageVisit(participant=participant, page=page, served_at=now, submitted_at=now)],
        ignore_conflicts=True,
    )


@participant_transaction
def participant_consent(*, participant: Participant, consent: bool) -> Participant:
    """Record the consent decision; declining ends the participation with NO_CONSENT."""
    p = locked_participant(participant)
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


@participant_transaction
def participant_demographics_save(
    *, participant: Participant, gender: str, age_group: str
) -> Participant:
    """Store gender and age group and move on to the instructions."""
    p = locked_participant(participant)
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


@participant_transaction
def participant_start_questions(
    *, participant: Participant, rng: random.Random | None = None
) -> Participant:
    """Assign the participant's questions (balanced across match sets) in a random order.

    The match sets come from a claimed assignment slot (survey.services.slots): arrivals do
    not wait for each other, only each for its own participant row."""
    rng = rng or random.SystemRandom()
    p = locked_participant(participant)
    if p.step != Participant.Step.INSTRUCTIONS:
        return p
    _page_submitted(p, Participant.Step.INSTRUCTIONS, timezone.now())
    if not p.question_count:  # 0 until assigned, in the same transaction as the questions
        p.question_count = len(Assignment.objects.bulk_create(_questions_plan(p, rng)))
    p.step = Participant.Step.QUESTIONS
    p.current_position = 1
    p.save(update_fields=["step", "current_position", "question_count"])
    return p


def _questions_plan(p: Participant, rng: random.Random) -> list[Assignment]:
    """The participant's questions from a claimed slot, shuffled, with the attention checks
    (on other match sets) at random positions after the first."""
    study = p.study
    # Their ids only (no model objects): the claimed slot names the chosen ones.
    match_set_ids = list(
        MatchSet.objects.filter(study=study).order_by("pk").values_list("pk", flat=True)
    )
    try:
        chosen = slot_claim(study=study, participant=p, match_set_ids=match_set_ids, rng=rng)
    except DesignError as error:
        raise StudyUnavailable(
            f"This study is not set up correctly ({error}). Please return it on Prolific."
        ) from error
    chosen_ids = set(chosen)
    spare = [pk for pk in match_set_ids if pk not in chosen_ids] or match_set_ids
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
                    match_set_id=rng.choice(spare),
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
                    match_set_id=next(queue),
                    position=position,
                    candidate_order=_candidate_order(study, rng),
                )
            )
    return rows


def question_served(*, participant: Participant, now: datetime | None = None) -> None:
    """Remember when the participant's current question was first shown (a reload keeps the
    first time; an answer shown with the next question sets it itself, survey.services.answers).
    """
    if participant.current_served_at is not None or participant.step != Participant.Step.QUESTIONS:
        return
    now = now or timezone.now()
    # Only while it is still that question and unmarked: another request (a second tab, an
    # answer) that was first keeps its time.
    updated = Participant.objects.filter(
        pk=participant.pk,
        step=Participant.Step.QUESTIONS,
        current_position=participant.current_position,
        current_served_at__isnull=True,
    ).update(current_served_at=now)
    if updated:
        participant.current_served_at = now


@participant_transaction
def participant_finish(*, participant: Participant) -> Participant:
    """Complete the participation after the debrief and issue the completion code."""
    p = locked_participant(participant)
    if p.step != Participant.Step.DEBRIEF:
        return p
    now = timezone.now()
    _page_submitted(p, Participant.Step.DEBRIEF, now)
    p.status = Participant.Status.COMPLETED
    p.step = Participant.Step.DONE
    p.completion_code = p.study.completion_code
    p.finished_at = now
    p.save()
    slot_settle(p)
    return p
