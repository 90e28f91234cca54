import random
from collections import Counter

import pytest

from survey import services
from survey.models import Assignment, Participant, RefusedRequest, Response
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets
from tests.survey.helpers import answer_current, at_questions, current, entered

pytestmark = pytest.mark.django_db


def test_entry_creates_one_participant_per_pid_and_resumes():
    study = study_with_match_sets(per_method=5)
    first = entered(study, pid="PIDAAAAAA1")
    again = entered(study, pid="PIDAAAAAA1", session="OTHERSESSION")
    assert first.pk == again.pk
    assert Participant.objects.filter(study=study).count() == 1
    assert first.prolific_pid == prolific_id("PIDAAAAAA1")
    assert first.pseudonym != "PIDAAAAAA1"


@pytest.mark.parametrize(
    ("pid", "study_id", "session", "needle"),
    [
        (None, STUDY_ID, prolific_id("SESSION01"), "missing PROLIFIC_PID"),
        (prolific_id("PID000001"), "", prolific_id("SESSION01"), "missing STUDY_ID"),
        (prolific_id("PID000001"), STUDY_ID, None, "missing SESSION_ID"),
        ("<script>x", STUDY_ID, prolific_id("SESSION01"), "PROLIFIC_PID is not a valid"),
        ("a" * 65, STUDY_ID, prolific_id("SESSION01"), "PROLIFIC_PID is not a valid"),
        ("PID0'; DROP", STUDY_ID, prolific_id("SESSION01"), "PROLIFIC_PID is not a valid"),
    ],
)
def test_malformed_prolific_parameters_are_refused(pid, study_id, session, needle):
    study = study_with_match_sets(per_method=5)
    with pytest.raises(services.EntryRefused, match=needle):
        services.participant_enter(
            study=study, prolific_pid=pid, study_id=study_id, session_id=session
        )
    assert not Participant.objects.exists()


def test_study_id_must_match_the_configured_prolific_study():
    study = study_with_match_sets(per_method=5, prolific_study_id=prolific_id("REALSTUDY1"))
    with pytest.raises(services.EntryRefused, match="STUDY_ID does not belong"):
        services.participant_enter(
            study=study,
            prolific_pid=prolific_id("PID000001"),
            study_id=prolific_id("OTHERSTUDY"),
            session_id=prolific_id("SESSION01"),
        )


def test_closed_and_full_studies_say_so():
    study = study_with_match_sets(per_method=5, status="closed")
    with pytest.raises(services.StudyUnavailable, match="not open"):
        entered(study)
    full = study_with_match_sets(per_method=5, max_participants=1)
    entered(full, pid="PIDFIRST01")
    with pytest.raises(services.StudyUnavailable, match="All places"):
        entered(full, pid="PIDSECOND1")
    assert entered(full, pid="PIDFIRST01").study_id == full.pk  # re-entry still resumes


def test_declining_consent_ends_with_no_consent_code():
    study = study_with_match_sets(per_method=5)
    p = services.participant_consent(participant=entered(study), consent=False)
    assert p.status == Participant.Status.NO_CONSENT
    assert p.completion_code == study.no_consent_code
    # A later "agree" (second tab) does not overturn the first decision.
    p = services.participant_consent(participant=p, consent=True)
    assert p.status == Participant.Status.NO_CONSENT
    assert not p.assignments.exists()


def test_questions_are_five_per_method_plus_attention_checks_in_random_order():
    study = study_with_match_sets(per_method=6)
    p = at_questions(study)
    assignments = list(p.assignments.select_related("match_set"))
    assert [a.position for a in assignments] == list(range(1, 23))
    real = [a for a in assignments if not a.is_attention_check]
    checks = [a for a in assignments if a.is_attention_check]
    assert Counter(a.match_set.method for a in real) == dict.fromkeys(study.methods, 5)
    assert len(checks) == 2
    assert all(a.position > 1 for a in checks)
    assert len({a.match_set_id for a in real}) == 20


def test_starting_questions_twice_does_not_reassign():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    before = list(p.assignments.values_list("match_set_id", "position"))
    p.step = Participant.Step.INSTRUCTIONS
    p.save()
    services.participant_start_questions(participant=p)
    assert list(p.assignments.values_list("match_set_id", "position")) == before


def test_assignment_is_balanced_across_match_sets():
    study = study_with_match_sets(per_method=7)
    rng = random.Random(3)
    for i in range(23):
        p = entered(study, pid=f"PIDBAL{i:04d}")
        p = services.participant_consent(participant=p, consent=True)
        p = services.participant_demographics_save(participant=p, gender="man", age_group="60+")
        services.participant_start_questions(participant=p, rng=rng)
    counts = Counter(
        Assignment.objects.filter(is_attention_check=False).values_list("match_set_id", flat=True)
    )
    assert len(counts) == 28
    assert max(counts.values()) - min(counts.values()) <= 1


def test_failed_participants_do_not_count_for_balance():
    study = study_with_match_sets(per_method=5, questions_per_method=1, attention_checks=0)
    p = at_questions(study, pid="PIDFAIL001")
    used = set(p.assignments.values_list("match_set_id", flat=True))
    Participant.objects.filter(pk=p.pk).update(status=Participant.Status.RETURNED)
    at_questions(study, pid="PIDNEXT001")
    # The returned participant's match sets are free again, so the newcomer may take them.
    counted = Counter(
        Assignment.objects.filter(participant__status="active").values_list(
            "match_set_id", flat=True
        )
    )
    assert max(counted.values()) == 1
    assert used  # the returned participant had real assignments


def test_full_path_completes_with_completion_code():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    for _ in range(study.question_count):
        result = answer_current(p)
        assert result.created
        p = result.participant
    assert p.step == Participant.Step.DEBRIEF
    p = services.participant_finish(participant=p)
    assert p.status == Participant.Status.COMPLETED
    assert p.completion_code == study.completion_code
    assert Response.objects.filter(participant=p).count() == 22


def test_second_answer_to_same_question_is_ignored():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    a = current(p)
    first = answer_current(p, selected_ranks=[2], confidence=4)
    again = services.response_record(
        participant=p, question=a, selected_photos=[5], none_selected=False, confidence=1
    )
    assert not again.created
    stored = Response.objects.get(assignment=a)
    assert (stored.selected_ranks, stored.confidence) == ([2], 4)
    assert again.response.pk == first.response.pk


def test_answer_to_a_later_question_is_refused_and_logged():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    later = Assignment.objects.get(participant=p, position=3)
    with pytest.raises(services.AnswerRefused, match="you are on question 1"):
        services.response_record(
            participant=p, question=later, selected_photos=[1], none_selected=False, confidence=3
        )
    assert not Response.objects.exists()
    assert RefusedRequest.objects.filter(participant=p, reason="answer_refused").exists()


def test_answer_to_another_participants_question_is_refused():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study, pid="PIDOWNER01")
    intruder = at_questions(study, pid="PIDINTRUD1")
    with pytest.raises(services.NotYourQuestion):
        services.response_record(
            participant=intruder,
            question=current(p),
            selected_photos=[1],
            none_selected=False,
            confidence=3,
        )
    assert not Response.objects.exists()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"confidence": 0}, "Confidence"),
        ({"confidence": 6}, "Confidence"),
        ({"confidence": "3"}, "Confidence"),
        ({"confidence": 3.0}, "Confidence"),
        ({"selected_photos": [6]}, "numbered 1 to 5"),
        ({"selected_photos": [0]}, "numbered 1 to 5"),
        ({"selected_photos": [], "none_selected": False}, "at least one"),
        ({"selected_photos": [1], "none_selected": True}, "not both"),
        ({"selected_photos": [1, 1]}, "only once"),
    ],
)
def test_invalid_answers_are_refused(fields, needle):
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    a = current(p)
    base = {"selected_photos": [1], "none_selected": False, "confidence": 3}
    with pytest.raises(services.InvalidAnswer, match=needle):
        services.response_record(participant=p, question=a, **{**base, **fields})
    assert not Response.objects.exists()
    p.refresh_from_db()
    assert p.current_position == 1


def test_two_failed_attention_checks_fail_the_participant_and_keep_data():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study, rng=random.Random(7))
    last_check = p.assignments.filter(is_attention_check=True).order_by("position").last()
    assert last_check.position < study.question_count  # seed 7 leaves questions after it
    while p.step == Participant.Step.QUESTIONS:
        p = answer_current(p, follow_checks=False).participant
    assert p.status == Participant.Status.FAILED_ATTENTION
    assert p.completion_code == study.failed_attention_code
    assert p.attention_failures == 2
    kept = Response.objects.filter(participant=p)
    assert kept.filter(attention_passed=False).count() == 2
    assert kept.count() == max(a.position for a in p.assignments.filter(response__isnull=False))
    unanswered = p.assignments.filter(response__isnull=True).first()
    with pytest.raises(services.AnswerRefused, match="already finished"):
        services.response_record(
            participant=p,
            question=unanswered,
            selected_photos=[1],
            none_selected=False,
            confidence=3,
        )


def test_one_failed_attention_check_is_forgiven():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    failed = 0
    while p.step == Participant.Step.QUESTIONS:
        a = current(p)
        follow = not (a.is_attention_check and failed == 0)
        failed += a.is_attention_check and not follow
        p = answer_current(p, follow_checks=follow).participant
    assert p.step == Participant.Step.DEBRIEF
    assert p.attention_failures == 1


def test_fast_answers_are_flagged_not_rejected():
    from datetime import timedelta

    study = study_with_match_sets(per_method=5, speeder_seconds=2.0)
    p = at_questions(study)
    services.question_served(participant=p)
    result = answer_current(p, now=p.current_served_at + timedelta(seconds=0.5))
    assert result.created
    assert result.response.is_fast
    assert result.response.served_at == p.current_served_at
    shown = result.participant
    assert shown.current_served_at is None  # the next question: not shown yet
    services.question_served(participant=shown)
    slow = answer_current(shown, now=shown.current_served_at + timedelta(seconds=9))
    assert not slow.response.is_fast
    assert slow.response.duration_seconds == pytest.approx(9)


def test_candidate_order_is_drawn_once_per_question_and_kept():
    study = study_with_match_sets(per_method=5)
    p = at_questions(study)
    orders = [a.candidate_order for a in p.assignments.order_by("position")]
    assert all(sorted(order) == [1, 2, 3, 4, 5] for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # 22 draws of 120 orders differ
    again = services.participant_start_questions(participant=p)
    assert [a.candidate_order for a in again.assignments.order_by("position")] == orders


def test_candidate_order_can_be_switched_off():
    study = study_with_match_sets(per_method=5, randomise_candidate_order=False)
    p = at_questions(study)
    assert {tuple(a.display_order(study.k)) for a in p.assignments.all()} == {(1, 2, 3, 4, 5)}


def test_a_participant_meets_each_identity_under_one_method_only():
    # Every identity has a match set under each of the 4 methods (the paper's design).
    from tests.factories import MatchSetFactory, StudyFactory

    study = StudyFactory(questions_per_method=1, attention_checks=0)
    for i in range(8):
        for method in ["eigenfaces", "nbnet", "naive", "vec2face"]:
            MatchSetFactory(study=study, method=method, target_identity=f"Person {i}")
    for n in range(16):
        p = at_questions(study, pid=f"PIDIDENT{n:03d}")
        seen = list(p.assignments.values_list("match_set__target_identity", flat=True))
        assert len(seen) == len(set(seen)) == 4
    counts = Counter(
        Assignment.objects.filter(participant__study=study).values_list("match_set", flat=True)
    )
    assert len(counts) == 32
    assert max(counts.values()) - min(counts.values()) <= 1


def test_analysis_plan_is_frozen_when_the_study_opens_and_changes_are_flagged():
    study = study_with_match_sets(per_method=5, status="draft")
    study.analysis_plan = {"alpha": 0.05, "primary": "any_correct", "planned_n": 200}
    study.save()
    opened = services.study_set_status(study=study, status="open")
    assert len(opened.analysis_plan_sha256) == 64
    assert opened.analysis_plan_frozen_at == opened.opened_at
    assert not opened.analysis_plan_changed
    opened.analysis_plan = {**opened.analysis_plan, "alpha": 0.1}
    opened.save()
    assert opened.analysis_plan_changed
    closed = services.study_set_status(study=opened, status="closed")
    reopened = services.study_set_status(study=closed, status="open")
    assert reopened.analysis_plan_sha256 == opened.analysis_plan_sha256  # first freeze stands


def test_opening_needs_enough_match_sets_for_every_method():
    study = study_with_match_sets(per_method=4, status="draft")
    with pytest.raises(services.FlowError, match="needs at least 5 match sets"):
        services.study_set_status(study=study, status="open")
