"""Which match sets a participant answers: balanced, and counterbalanced when possible.

The choice is made ahead, for a batch of future participants at a time
(`plans_generate`), each plan against the counts of those decided before it, so that every
prefix of the sequence keeps every match set within one answer of the others (per FVR
method); arrivals then claim the plans in order without waiting for each other
(`survey.services.slots`).

Two designs, chosen from the match sets themselves:
- **Latin square** when every target identity has exactly one match set per method and the
  identities split into blocks of one per method: within a block, rotation r shows identity j
  under method (j + r) mod M. A participant takes `questions_per_method` blocks (the least
  used), each at its least-used rotation, so nobody judges the same face twice and each
  identity × method cell is answered equally often.
- **Balanced pools** otherwise: each method's least-answered match sets, preferring, among
  equally answered ones, identities the participant has not met yet.
"""

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Q

from survey.models import MatchSet, Participant, Study, methods_in_order


class DesignError(Exception):
    """The study's match sets cannot fill a participant's questions."""


def match_sets_with_counts(study: Study, *, now: datetime | None = None) -> list[MatchSet]:
    """The study's match sets, each annotated with `answered_by`: the participants assigned it
    who count for balance (completed, or active within the study's maximum minutes; those who
    declined, failed, returned or ran out of time leave their match sets to others)."""
    counted = Participant.objects.filter(study=study).counted_for_balance(now=now)
    return list(
        MatchSet.objects.filter(study=study).annotate(
            answered_by=Count(
                "assignments",
                filter=Q(
                    assignments__is_attention_check=False,
                    assignments__participant__in=counted,
                ),
            )
        )
    )


def latin_square_blocks(study: Study, match_sets: list[MatchSet]) -> list[list[list[MatchSet]]]:
    """blocks[b][r] = the match sets of block b at rotation r; empty if the grid is incomplete."""
    methods = methods_in_order(ms.method for ms in match_sets)  # no query
    m = len(methods)
    grid = {(ms.target_identity, ms.method): ms for ms in match_sets}
    identities = sorted({ms.target_identity for ms in match_sets})
    complete = (
        m > 1
        and len(grid) == len(match_sets) == len(identities) * m
        and len(identities) % m == 0
        and len(identities) // m >= study.questions_per_method
    )
    if not complete:
        return []
    # A fixed, study-specific shuffle of identities into blocks (not alphabetical neighbours).
    identities.sort(key=lambda name: hashlib.sha256(f"{study.slug}:{name}".encode()).digest())
    blocks = []
    for start in range(0, len(identities), m):
        members = identities[start : start + m]
        blocks.append(
            [
                [grid[(name, methods[(j + r) % m])] for j, name in enumerate(members)]
                for r in range(m)
            ]
        )
    return blocks


def _latin_square_choice(
    blocks: list[list[list[MatchSet]]], need: int, rng: random.Random
) -> list[MatchSet]:
    def usage(cells: list[MatchSet]) -> int:
        return sum(ms.answered_by for ms in cells)

    ranked = sorted(blocks, key=lambda rotations: (sum(map(usage, rotations)), rng.random()))
    chosen: list[MatchSet] = []
    for rotations in ranked[:need]:
        chosen.extend(min(rotations, key=lambda cells: (usage(cells), rng.random())))
    return chosen


def _least_answered(
    pool: list[MatchSet], need: int, seen_identities: set[str], rng: random.Random
) -> list[MatchSet]:
    """Take `need` match sets with the fewest answers; among equals, unseen identities first."""
    picked: list[MatchSet] = []
    for tier_count in sorted({ms.answered_by for ms in pool}):
        tier = [ms for ms in pool if ms.answered_by == tier_count]
        rng.shuffle(tier)
        while tier and len(picked) < need:
            pick = next((ms for ms in tier if ms.target_identity not in seen_identities), tier[0])
            tier.remove(pick)
            picked.append(pick)
            seen_identities.add(pick.target_identity)
        if len(picked) == need:
            break
    return picked


def _pooled_choice(study: Study, match_sets: list[MatchSet], rng: random.Random) -> list[MatchSet]:
    by_method: dict[str, list[MatchSet]] = defaultdict(list)
    for ms in match_sets:
        by_method[ms.method].append(ms)
    chosen: list[MatchSet] = []
    seen_identities: set[str] = set()
    methods = methods_in_order(ms.method for ms in match_sets)  # no query
    rng.shuffle(methods)
    for method in methods:
        pool = by_method[method]
        if len(pool) < study.questions_per_method:
            raise DesignError(f"{method} has fewer match sets than questions per method")
        chosen.extend(_least_answered(pool, study.questions_per_method, seen_identities, rng))
    return chosen


def design_fingerprint(match_set_ids: Iterable[int]) -> str:
    """Which match sets (by id) a plan was decided over: plans of another set are not used."""
    ids = ",".join(str(pk) for pk in sorted(match_set_ids))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def plans_generate(
    study: Study, match_sets: list[MatchSet], count: int, rng: random.Random
) -> list[list[MatchSet]]:
    """The next ``count`` participants' match sets, in order, each chosen as the least used
    given ``answered_by`` (the counts so far) and the plans before it; ``answered_by`` is
    advanced as they are chosen. Raises DesignError when the study cannot fill a plan."""
    blocks = latin_square_blocks(study, match_sets)
    plans = []
    for _ in range(count):
        if blocks:
            chosen = _latin_square_choice(blocks, study.questions_per_method, rng)
        else:
            chosen = _pooled_choice(study, match_sets, rng)
        for ms in chosen:
            ms.answered_by += 1
        plans.append(chosen)
    return plans
