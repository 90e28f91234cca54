"""Tampering with answers: each attempt is refused with a clear 4xx, logged, and changes nothing.

Answers out of order, for someone else, after completion or changed.
(test_views.py and test_api.py cover the basic refusals; this file adds what they do not.
The other kinds of tampering are in test_tampering_input.py and test_tampering_access.py.)
"""

import uuid

import pytest
from django.test import Client

from survey.models import Assignment, Participant, Response, Study
from tests.survey import helpers
from tests.survey.http_helpers import JSON, answer_fields, at_questions, script_answer, url
from tests.survey.tampering_helpers import (
    OTHER,
    completed,
    refusals,
    state,
    study_fixture,  # noqa: F401  (the `study` fixture, found here by pytest)
)

pytestmark = pytest.mark.django_db


# Answers: out of order, someone else's, after completion, changed --------------------------


def test_form_answer_to_a_later_question_is_redirected_logged_and_ignored(study):
    client = Client()
    p = at_questions(client, study)
    later = Assignment.objects.get(participant=p, position=3)
    before = state(study)
    response = client.post(
        url("question", study, position=3),
        {"question": str(later.token), "selected": ["1"], "confidence": "3"},
    )
    assert response.status_code == 302
    assert response["Location"] == url("question", study, position=1)
    assert state(study) == before
    assert refusals("answer_refused") == [
        "Refused: an answer to question 3 was submitted while the participant is at question 1."
    ]


def test_a_later_questions_token_posted_on_the_current_page_is_refused_with_409(study):
    client = Client()
    p = at_questions(client, study)
    later = Assignment.objects.get(participant=p, position=2)
    before = state(study)
    response = client.post(
        url("question", study, position=1),
        {"question": str(later.token), "selected": ["1"], "confidence": "3"},
    )
    assert response.status_code == 409
    assert b"This is question 2, but you are on question 1" in response.content
    assert state(study) == before
    assert len(refusals("answer_refused")) == 1


def test_script_answer_with_another_participants_token_is_403_logged_and_ignored(study):
    owner = at_questions(Client(), study)
    intruder = Client()
    at_questions(intruder, study, OTHER)
    victim_question = Assignment.objects.get(participant=owner, position=1)
    before = state(study)
    response = script_answer(intruder, study, 1, answer_fields(victim_question, [1]))
    assert response.status_code == 403
    assert response.json() == {
        "error": "This question does not belong to you.",
        "code": "not_your_question",
    }
    assert state(study) == before
    assert len(refusals("not_your_question")) == 1


def test_script_answer_with_an_unknown_token_is_403_and_ignored(study):
    client = Client()
    at_questions(client, study)
    before = state(study)
    body = {"question": str(uuid.uuid4()), "selected": ["1"], "confidence": "3"}
    response = script_answer(client, study, 1, body)
    assert response.status_code == 403
    assert state(study) == before


def test_a_changed_answer_from_the_script_is_not_taken_and_the_first_stands(study):
    client = Client()
    p = at_questions(client, study)
    first = Assignment.objects.get(participant=p, position=1)
    assert not first.is_attention_check  # attention checks never come first
    assert script_answer(client, study, 1, answer_fields(first, [2], 5)).status_code == 200
    before = state(study)
    changed = script_answer(client, study, 1, answer_fields(first, [], 1, none=True))
    assert changed.status_code == 200
    assert changed.json()["notice"].endswith("your first answer is kept.")
    assert state(study) == before
    stored = Response.objects.get(assignment=first)
    assert (stored.selected_ranks, stored.none_selected, stored.confidence) == ([2], False, 5)


def test_answers_after_completion_change_nothing(study):
    client = Client()
    p = completed(client, study)
    last = Assignment.objects.get(participant=p, position=study.question_count)
    before = state(study)
    form = client.post(
        url("question", study, position=last.position),
        {"question": str(last.token), "selected": ["4"], "confidence": "1"},
    )
    assert form.status_code == 302
    assert form["Location"] == url("done", study)
    assert "at done" in refusals("answer_refused")[0]
    script = script_answer(client, study, last.position, answer_fields(last, [4], 1))
    assert script.status_code == 200
    assert script.json()["next"] == url("done", study)
    assert state(study) == before
    # The completion code is the one issued at the end, however often the end is visited.
    done = client.get(url("done", study))
    assert done["Location"].endswith(f"cc={study.completion_code}")


def test_answers_after_failing_the_attention_checks_are_refused_with_409(study):
    # Failed on the first check, so a question is always left to try: the second of two checks
    # may be the last question (positions are random), which left none and made this flaky.
    Study.objects.filter(pk=study.pk).update(attention_failures_allowed=0)
    study.refresh_from_db()
    client = Client()
    p = at_questions(client, study)
    while p.status == Participant.Status.ACTIVE:
        p = helpers.answer_current(p, follow_checks=False).participant
    assert p.status == Participant.Status.FAILED_ATTENTION
    unanswered = Assignment.objects.filter(participant=p, response__isnull=True).first()
    assert unanswered is not None
    before = state(study)
    # Posted on the page the participant was last shown (its position is still current).
    p.refresh_from_db()
    page = url("question", study, position=p.current_position)
    form = client.post(page, answer_fields(unanswered, [1]))
    assert form.status_code == 302
    assert form["Location"] == url("done", study)
    script = client.post(page, answer_fields(unanswered, [1]), **JSON)
    assert script.status_code == 200
    assert script.json()["next"] == url("done", study)
    assert state(study) == before
    assert len(refusals("answer_refused")) == 2
