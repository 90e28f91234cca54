"""The "nothing lost" checks: the clients' log against the database, after a run."""

from collections import Counter
from dataclasses import dataclass, field

from django.db.models import Count, F, Q

from survey.assignment import match_sets_with_counts
from survey.models import Participant, Response, Study

AnswerKey = tuple[str, int, str, tuple[int, ...], bool, int]


@dataclass
class Findings:
    """What the checks found: figures to print and the invariants that broke."""

    figures: dict[str, object] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.broken.append(message)


def answer_key(answer: dict) -> AnswerKey:
    return (
        answer["pid"],
        int(answer["position"]),
        str(answer["token"]),
        tuple(sorted(answer["selected"])),
        bool(answer["none"]),
        int(answer["confidence"]),
    )


def shown_as(ranks: list[int], order: list[int], k: int) -> tuple[int, ...]:
    """The photo numbers under which these candidate ranks were shown, sorted."""
    order = list(order) or list(range(1, k + 1))
    return tuple(sorted(order.index(rank) + 1 for rank in ranks))


def spread_by_method(study: Study) -> dict[str, int]:
    """Per FVR method: most minus fewest participants assigned to one of its match sets."""
    counts: dict[str, list[int]] = {}
    for match_set in match_sets_with_counts(study):
        counts.setdefault(match_set.method, []).append(match_set.answered_by)
    return {method: max(c) - min(c) for method, c in counts.items()}


def sample(items: object, n: int = 3) -> str:
    return ", ".join(str(item) for item in list(items)[:n])


def invariants_check(*, slug: str, log: dict) -> Findings:
    """Acknowledged answers = stored answers, one per question, codes = completers, spread ≤ 1."""
    found = Findings()
    study = Study.objects.get(slug=slug)
    acked = [answer_key(a) for a in log["acked"]]
    # Participants post photo numbers; the stored ranks map back through the display order.
    stored = [
        (pid, position, str(token), shown_as(ranks, order, study.k), none, confidence)
        for pid, position, token, ranks, order, none, confidence in Response.objects.filter(
            participant__study=study
        ).values_list(
            "participant__prolific_pid",
            "assignment__position",
            "assignment__token",
            "selected_ranks",
            "assignment__candidate_order",
            "none_selected",
            "confidence",
        )
    ]
    acked_set, stored_set = set(acked), set(stored)
    lost, unacknowledged = acked_set - stored_set, stored_set - acked_set
    found.figures |= {"answers acknowledged": len(acked), "answers stored": len(stored)}
    found.require(not lost, f"{len(lost)} acknowledged answers are not stored: {sample(lost)}")
    found.require(
        not unacknowledged,
        f"{len(unacknowledged)} stored answers were never acknowledged: {sample(unacknowledged)}",
    )
    found.require(
        not log["in_doubt"],
        f"{len(log['in_doubt'])} answers were sent but never acknowledged (client gave up)",
    )
    per_question = Counter((key[0], key[1]) for key in acked)
    repeated = [k for k, n in per_question.items() if n > 1]
    found.require(not repeated, f"answers acknowledged twice for one question: {sample(repeated)}")
    duplicates = (
        Response.objects.filter(participant__study=study)
        .values("participant", "assignment")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    found.require(duplicates == 0, f"{duplicates} questions have more than one stored answer")

    participants = Participant.objects.filter(study=study).annotate(
        answered=Count("responses", distinct=True), questions=Count("assignments", distinct=True)
    )
    entered = set(log["entered"])
    in_db = set(participants.values_list("prolific_pid", flat=True))
    found.figures |= {"participants": len(in_db)}
    found.require(
        in_db == entered,
        f"participants in the database ({len(in_db)}) differ from arrivals the clients saw "
        f"({len(entered)}): {sample(in_db ^ entered)}",
    )
    all_answered = set(
        participants.filter(questions__gt=0, answered=F("questions")).values_list(
            "prolific_pid", flat=True
        )
    )
    coded = set(
        participants.filter(
            status=Participant.Status.COMPLETED, completion_code=study.completion_code
        ).values_list("prolific_pid", flat=True)
    )
    client_coded = {c["pid"] for c in log["completed"] if c["code"] == study.completion_code}
    found.figures |= {
        "participants with every answer": len(all_answered),
        "completion codes issued": len(coded),
        "completion codes the clients got": len(client_coded),
    }
    found.require(
        coded == all_answered,
        f"completion codes ({len(coded)}) differ from participants with every answer "
        f"({len(all_answered)}): {sample(coded ^ all_answered)}",
    )
    found.require(
        client_coded == coded,
        f"codes the clients received ({len(client_coded)}) differ from codes issued "
        f"({len(coded)}): {sample(client_coded ^ coded)}",
    )
    failed = participants.filter(~Q(status__in=["active", "completed"])).count()
    found.require(failed == 0, f"{failed} participants failed or left although none should")
    spread = spread_by_method(study)
    found.figures |= {"assignment spread": spread}
    found.require(all(s <= 1 for s in spread.values()), f"assignment spread above 1: {spread}")
    return found
