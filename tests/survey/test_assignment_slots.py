"""Assignment slots: questions decided ahead in batches, claimed lowest-free first."""

from collections import Counter

import pytest

from survey.dataprotection import participant_delete
from survey.models import Assignment, AssignmentSlot, Participant
from survey.services import slots
from tests.factories import MatchSetFactory, study_with_match_sets
from tests.survey.data_protection_helpers import finished
from tests.survey.helpers import at_questions

pytestmark = pytest.mark.django_db


def spread_per_method(study) -> dict[str, int]:
    """Per FVR method, most minus fewest participants per match set (counted for balance)."""
    counted = Participant.objects.filter(study=study).counted_for_balance()
    answered = Counter(
        Assignment.objects.filter(participant__in=counted, is_attention_check=False).values_list(
            "match_set_id", flat=True
        )
    )
    spread = {}
    for method in study.methods:
        counts = [answered[ms.pk] for ms in study.match_sets.filter(method=method)]
        spread[method] = max(counts) - min(counts)
    return spread


def held_slot(p: Participant) -> AssignmentSlot:
    return AssignmentSlot.objects.get(participant=p)


def test_slots_are_decided_in_batches_and_every_arrival_keeps_the_balance(monkeypatch):
    monkeypatch.setattr(slots, "BATCH", 3)
    study = study_with_match_sets(per_method=7, questions_per_method=2)
    for i in range(11):
        p = at_questions(study, pid=f"PIDSLOT{i:03d}")
        assert held_slot(p).seq == i + 1  # the lowest free slot
        assert max(spread_per_method(study).values()) <= 1
        mine = set(
            p.assignments.filter(is_attention_check=False).values_list("match_set", flat=True)
        )
        assert mine == set(held_slot(p).match_sets)
        assert p.question_count == p.assignments.count() == study.question_count
    # Four batches of three decided, one slot left for the next arrival.
    assert AssignmentSlot.objects.filter(study=study).count() == 12
    assert AssignmentSlot.objects.filter(study=study, participant=None).count() == 1


def test_a_participant_who_leaves_gives_their_slot_to_the_next_arrival():
    study = study_with_match_sets(per_method=5)
    first = at_questions(study, pid="PIDLEAVES1")
    second = at_questions(study, pid="PIDSTAYS01")
    slot = held_slot(first)
    Participant.objects.filter(pk=first.pk).update(status=Participant.Status.RETURNED)
    third = at_questions(study, pid="PIDTAKES01")
    assert held_slot(third) == slot
    assert held_slot(second).seq == 2
    theirs = third.assignments.filter(is_attention_check=False).values_list("match_set", flat=True)
    assert set(theirs) == set(slot.match_sets)
    assert max(spread_per_method(study).values()) <= 1


def test_slots_decided_over_other_match_sets_are_not_claimed():
    """A match set added after slots were decided: the next arrival takes a slot of the new
    set of match sets, decided counting the questions already assigned; the earlier design's
    free slots go, its held ones stay."""
    study = study_with_match_sets(per_method=5)
    first = at_questions(study, pid="PIDBEFORE1")
    old_design = held_slot(first).design
    MatchSetFactory(study=study, method=study.methods[0])
    second = at_questions(study, pid="PIDAFTER01")
    assert held_slot(second).design != old_design
    old = AssignmentSlot.objects.filter(study=study, design=old_design)
    assert list(old.values_list("participant", flat=True)) == [first.pk]  # the free ones went
    assert max(spread_per_method(study).values()) <= 1


def test_a_completed_participants_slot_is_settled_and_never_walked_again():
    """Completing settles the slot (the claim's partial index leaves it out); the next
    arrival takes the lowest free slot after it, and the balance holds."""
    study = study_with_match_sets(per_method=5)
    done = finished(study, "PIDDONE001")
    going = at_questions(study, pid="PIDGOING01")
    assert held_slot(done).settled
    assert not held_slot(going).settled
    arrival = at_questions(study, pid="PIDNEXT001")
    assert held_slot(arrival).seq == 3
    assert not held_slot(arrival).settled
    assert max(spread_per_method(study).values()) <= 1


def test_an_erased_participants_slot_goes_to_the_next_arrival_settled_or_not():
    """Erasure takes the person's answers away, so their question set is offered again,
    whether they had completed (a settled slot) or were still answering."""
    study = study_with_match_sets(per_method=5)
    done = finished(study, "PIDERASE01")
    going = at_questions(study, pid="PIDERASE02")
    slot_done, slot_going = held_slot(done), held_slot(going)
    for p in (done, going):
        participant_delete(study=study, pseudonym=p.pseudonym, actor="t", reason="request")
    slot_done.refresh_from_db()
    assert (slot_done.participant, slot_done.settled) == (None, False)
    first, second = (at_questions(study, pid=f"PIDREFILL{i}") for i in (1, 2))
    assert (held_slot(first), held_slot(second)) == (slot_done, slot_going)
    assert max(spread_per_method(study).values()) <= 1
