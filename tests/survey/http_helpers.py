"""Drive participants through the pages over HTTP (Django's test client), shared by tests."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from survey.models import Assignment, Participant
from tests.factories import STUDY_ID, prolific_id

PARAMS = {
    "PROLIFIC_PID": prolific_id("PIDVIEW0001"),
    "STUDY_ID": STUDY_ID,
    "SESSION_ID": prolific_id("SESSVIEW01"),
}
# What the question page's script sends: it asks for JSON (survey.views.answer).
JSON = {"HTTP_ACCEPT": "application/json", "HTTP_X_REQUESTED_WITH": "fetch"}


def url(name: str, study, **kwargs) -> str:
    return reverse(f"survey:{name}", kwargs={"slug": study.slug, **kwargs})


def at_questions(client: Client, study, params: dict = PARAMS) -> Participant:
    client.get(url("entry", study), params)
    client.post(url("consent", study), {"decision": "agree"})
    client.post(url("demographics", study), {"gender": "woman", "age_group": "18-29"})
    client.post(url("instructions", study))
    return Participant.objects.get(prolific_pid=params["PROLIFIC_PID"])


def answer_payload(p: Participant, **overrides) -> dict:
    a = Assignment.objects.get(participant=p, position=p.current_position)
    if a.is_attention_check:
        photo = a.photo_number(a.attention_rank, p.study.k)
        data = {"selected": [str(photo)], "confidence": str(a.attention_confidence)}
    else:
        data = {"selected": ["1"], "confidence": "3"}
    return {"question": str(a.token), **data, **overrides}


def answer_fields(
    assignment: Assignment, ranks: list[int], confidence: int = 3, *, none: bool = False
) -> dict:
    """The question form's fields selecting the candidates of these ranks (as photo numbers)."""
    k = assignment.participant.study.k
    data: dict = {
        "question": str(assignment.token),
        "selected": [str(assignment.photo_number(rank, k)) for rank in ranks],
        "confidence": str(confidence),
    }
    if none:
        data["none_of_these"] = "on"
    return data


def script_answer(client: Client, study, position: int, data: dict | bytes) -> HttpResponse:
    """POST an answer to question ``position`` as the page's script does (JSON back)."""
    path = url("question", study, position=position)
    if isinstance(data, bytes):
        return client.generic(
            "POST", path, data, content_type="application/x-www-form-urlencoded", **JSON
        )
    return client.post(path, data, **JSON)


@contextmanager
def in_test_transaction() -> Iterator[None]:
    """Call the WSGI application inside the test's database transaction.

    Django's WSGI handler closes the database connection after each request (as a server
    must); Django's test client switches that off for each of its own requests (and back on
    after them), and so must any other in-process client, or PostgreSQL loses the test's
    transaction after the first request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def arrival(n: int) -> dict[str, str]:
    """The Prolific parameters of the ``n``-th arrival at a study's entry URL."""
    return {
        "PROLIFIC_PID": prolific_id(f"PIDRATE{n:05d}"),
        "STUDY_ID": STUDY_ID,
        "SESSION_ID": prolific_id(f"S{n:07d}"),
    }
