"""A participant's questions, kept per process: they never change once assigned.

Submitting the instructions assigns all of a participant's questions at once
(survey.services.steps) and nothing changes them afterwards — match set, position, token,
attention instruction, candidate order; when each was shown lives on the participant row and
in the answers. So a process reads a participant's questions once, all of them with their
match sets, and every later answer and question page of that participant in the process takes
them from here instead of a query each (issue 19: the answer then writes its two rows after
one read, the participant's under its lock).

- The key includes the participant's entry time: a participant deleted and another created
  under a reused row id (a rolled-back transaction hands the id out again) is never taken for
  the old one.
- Only a complete set is kept (as many rows as the participant's question count).
- Callers get copies: what one request sets on its question (an answer's reverse relation)
  never reaches another. Match sets are shared between the participants who were given them
  (read-only here), so the store holds each once.
"""

import copy
from datetime import datetime

from survey.models import Assignment, MatchSet, Participant

MAX_KEPT = 2_000  # participants (≈ 25 questions each, ≈ 1 KB a question); then start again
_kept: dict[tuple[int, datetime | None], dict[int, Assignment]] = {}
_match_sets: dict[tuple[int, str], MatchSet] = {}


def _kept_questions(participant: Participant) -> dict[int, Assignment]:
    key = (participant.pk, participant.entered_at)
    kept = _kept.get(key)
    if kept is not None:
        return kept
    rows = {
        a.position: a
        for a in Assignment.objects.filter(participant_id=participant.pk)
        .select_related("match_set")
        .order_by()
    }
    for a in rows.values():
        a.question_total = participant.question_count
        match_set = a.match_set
        shared = _match_sets.setdefault((match_set.pk, match_set.query_image.name), match_set)
        a.match_set = shared
    if participant.question_count and len(rows) == participant.question_count:
        if len(_kept) >= MAX_KEPT:
            _kept.clear()
            _match_sets.clear()
        _kept[key] = rows
    return rows


def questions_at(participant: Participant, *positions: int) -> dict[int, Assignment]:
    """The participant's questions at ``positions`` that exist, by position, each with its
    match set and ``question_total``; at most one query per process and participant."""
    rows = _kept_questions(participant)
    return {position: copy.copy(rows[position]) for position in positions if position in rows}


def question_with_token(participant: Participant, token: str) -> Assignment | None:
    """The participant's question whose token is ``token`` (a copy), or None when none is."""
    for a in _kept_questions(participant).values():
        if str(a.token) == token:
            return copy.copy(a)
    return None


def questions_forget(participant: Participant) -> None:
    """Drop a participant's questions from this process (they have answered the last)."""
    _kept.pop((participant.pk, participant.entered_at), None)


def questions_clear() -> None:
    """Drop every kept question (tests)."""
    _kept.clear()
    _match_sets.clear()
