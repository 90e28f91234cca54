"""What the observer model predicts: each method's expected accuracy from the bots' own
P(correct), next to the observed one.

Because an observer's draw is a known categorical distribution, the probability that the bot
selects a true match on a question is P(correct) = sum of p_i over the true candidates: every
answer record keeps p_i per photo number (the bot sees photos, never ranks; the truth and the
display order are read from the database afterwards, as the researcher has them), so the
observer's expected accuracy per method is computed from the model alone and compared with
what ``analyze_study`` estimates from the stored responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from survey.bots.runs import PilotRun


@dataclass(frozen=True)
class MethodExpectation:
    """Per method: target-present answers, the observer's expected and the observed accuracy."""

    method: str
    n_responses: int
    expected: float
    observed: float


def observer_expected_accuracy(
    *, study: Any, run: PilotRun, pseudonyms: set[str] | None = None
) -> list[MethodExpectation]:
    """Expected accuracy per method from the bots' own P(correct), on target-present questions.

    Counts attentive bots that completed (or only the given pseudonyms); the truth (which
    candidates are true) is read from the database, as the researcher has it.
    """
    from survey.models import Assignment, pseudonymise

    by_pid = {r.pid: r for r in run.results}
    if pseudonyms is None:
        keep = {r.pid for r in run.results if r.outcome == "completed" and not r.careless}
    else:
        keep = {pid for pid in by_pid if pseudonymise(pid) in pseudonyms}
    tokens = {
        a.token: a for pid in keep for a in by_pid[pid].answers if not a.attention_check and a.token
    }
    rows = (
        Assignment.objects.filter(token__in=list(tokens), participant__study=study)
        .select_related("match_set")
        .prefetch_related("match_set__candidates")
    )
    sums: dict[str, list[float]] = {}
    for assignment in rows:
        true = {
            assignment.photo_number(c.rank, study.k)
            for c in assignment.match_set.candidates.all()
            if c.is_true
        }
        if not true:
            continue
        record = tokens[str(assignment.token)]
        p = sum(record.probabilities.get(photo, 0.0) for photo in true)
        hit = float(bool(true.intersection(record.selected)))
        acc = sums.setdefault(assignment.match_set.method, [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += p
        acc[2] += hit
    return [
        MethodExpectation(method=m, n_responses=int(n), expected=e / n, observed=o / n)
        for m, (n, e, o) in sorted(sums.items())
    ]
