"""A participant's questions claimed from the study's assignment slots (survey.models.slots).

Claims never wait for each other: each takes the lowest free slot that no other transaction
is claiming (``SKIP LOCKED``). Only deciding the next batch of slots takes the study row's
lock, once per `BATCH` arrivals; its holder waits for no participant's row, so the lock order
of `survey.services.locks` holds.
"""

import random
from collections import Counter
from datetime import datetime

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from survey.assignment import design_fingerprint, plans_generate
from survey.models import Assignment, AssignmentSlot, MatchSet, Participant, Study
from survey.services.locks import locked_study

BATCH = 100  # participants' question sets decided at a time


def _free(study: Study, now: datetime) -> Q:
    """A slot nobody holds, or whose holder no longer counts for balance."""
    released = Participant.objects.released(now=now, study=study)
    return Q(participant__isnull=True) | Q(participant__in=released)


def free_slot_query(study: Study, design: str, now: datetime) -> QuerySet[AssignmentSlot]:
    """The lowest free slot of this design that no other transaction is claiming, to lock:
    from the unsettled slots only (the partial index ``assignment_slot_open``)."""
    return (
        AssignmentSlot.objects.select_for_update(of=("self",), no_key=True, skip_locked=True)
        .filter(_free(study, now), study=study, design=design, settled=False)
        .order_by("seq")[:1]
    )


def slot_settle(participant: Participant) -> None:
    """The participant completed: their slot is never free again (AssignmentSlot.settled)."""
    AssignmentSlot.objects.filter(participant=participant).update(settled=True)


def slot_free(participant: Participant) -> None:
    """The participant is being erased: their slot goes to the next arrival, as it would
    have had they left before completing (their answers go with them)."""
    AssignmentSlot.objects.filter(participant=participant).update(participant=None, settled=False)


def _free_slot_lock(study: Study, design: str, now: datetime) -> AssignmentSlot | None:
    """The lowest free slot of this design that no other transaction is claiming, locked."""
    return next(iter(free_slot_query(study, design, now)), None)


def slot_claim(
    *, study: Study, participant: Participant, match_set_ids: list[int], rng: random.Random
) -> list[int]:
    """Claim a slot for ``participant`` (whose row the caller's transaction holds) and return
    the ids of its match sets, of the study's ``match_set_ids``. Raises
    survey.assignment.DesignError when none can be decided."""
    design = design_fingerprint(match_set_ids)
    now = timezone.now()
    slot = _free_slot_lock(study, design, now)
    if slot is None:
        locked_study(study.pk)  # one writer of new slots at a time
        slot = _free_slot_lock(study, design, now)  # another may have just added some
        if slot is None:
            _slots_extend(study, match_set_ids, design, rng)
            slot = _free_slot_lock(study, design, now)
    AssignmentSlot.objects.filter(pk=slot.pk).update(participant=participant, claimed_at=now)
    return list(slot.match_sets)


def _slots_extend(study: Study, match_set_ids: list[int], design: str, rng: random.Random) -> None:
    """Decide the next `BATCH` slots, continuing from every question set decided so far, and
    drop the free slots of an earlier design; the caller holds the study row's lock. The
    match sets themselves (method, identity) are read here only: a claim needs their ids."""
    # By pk, not MatchSet's default ordering, which would join the study table for nothing.
    match_sets = list(MatchSet.objects.filter(pk__in=match_set_ids).order_by("pk"))
    counts = _decided_counts(study, design)
    for ms in match_sets:
        ms.answered_by = counts[ms.pk]
    plans = plans_generate(study, match_sets, BATCH, rng)
    # Free slots of an earlier set of match sets are never claimed again: they go, so that
    # what is left of an earlier design is only what its holders answered.
    AssignmentSlot.objects.filter(study=study, participant=None).exclude(design=design).delete()
    last = AssignmentSlot.objects.filter(study=study).aggregate(last=Max("seq"))["last"] or 0
    AssignmentSlot.objects.bulk_create(
        AssignmentSlot(
            study=study,
            seq=last + i,
            design=design,
            match_sets=sorted(ms.pk for ms in plan),
        )
        for i, plan in enumerate(plans, start=1)
    )


def _decided_counts(study: Study, design: str) -> Counter:
    """Per match set, the question sets that hold it: every slot of this design (each will be
    answered once, by its holder or by whoever claims it next), and the questions of
    participants counted for balance who hold none of them (assigned before slots existed, or
    under an earlier set of match sets)."""
    counts: Counter = Counter()
    slots = AssignmentSlot.objects.filter(study=study, design=design)
    for plan in slots.values_list("match_sets", flat=True):
        counts.update(plan)
    others = (
        Participant.objects.filter(study=study)
        .counted_for_balance()
        .exclude(assignment_slot__design=design)
    )
    rows = (
        Assignment.objects.filter(participant__in=others, is_attention_check=False)
        .order_by()
        .values("match_set_id")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        counts[row["match_set_id"]] += row["n"]
    return counts
