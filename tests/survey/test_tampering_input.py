"""Tampering with input: each attempt is refused with a clear 4xx, logged, and changes nothing.

Hostile Prolific parameters; oversized, non-UTF-8 and malformed bodies on the participant
forms (the answer form included).
(test_views.py and test_api.py cover the basic refusals; this file adds what they do not.
The other kinds of tampering are in test_tampering_answers.py and test_tampering_access.py.)
"""

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from survey.models import Participant
from tests.factories import STUDY_ID, prolific_id
from tests.survey import helpers
from tests.survey.http_helpers import PARAMS, answer_payload, at_questions, url
from tests.survey.tampering_helpers import (
    refusals,
    state,
    study_fixture,  # noqa: F401  (the `study` fixture, found here by pytest)
)

pytestmark = pytest.mark.django_db


# Hostile Prolific parameters ----------------------------------------------------------------

HOSTILE_IDS = [
    pytest.param("", "missing", id="empty"),
    pytest.param("A" * 10_000, "not a valid", id="10-kB"),
    pytest.param("' OR '1'='1", "not a valid", id="sql-or"),
    pytest.param("PID1'; DROP TABLE survey_participant; --", "not a valid", id="sql-drop"),
    pytest.param("<script>alert(1)</script>", "not a valid", id="script"),
    pytest.param('"><img src=x onerror=alert(1)>', "not a valid", id="html-attr"),
    pytest.param("PID\x00000001", "not a valid", id="nul"),
    pytest.param("\x00" * 8, "not a valid", id="only-nul"),
    pytest.param("\u0420ID0000001", "not a valid", id="cyrillic-homoglyph"),
    pytest.param(
        "".join(chr(ord(c) + 0xFEE0) for c in "PID0000001"), "not a valid", id="fullwidth"
    ),
    pytest.param("PID0000001\u200b", "not a valid", id="zero-width-space"),
    pytest.param(" PID0000001", "not a valid", id="leading-space"),
    pytest.param("PID0000001\n", "not a valid", id="trailing-newline"),
    pytest.param("PID 000001", "not a valid", id="inner-space"),
    pytest.param("\tPID000001", "not a valid", id="tab"),
    pytest.param("../../etc/passwd", "not a valid", id="traversal"),
]


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize(("value", "problem"), HOSTILE_IDS)
def test_hostile_prolific_parameters_are_refused_logged_and_never_echoed(
    study, name, value, problem
):
    client = Client()
    response = client.get(url("entry", study), {**PARAMS, name: value}, follow=True)
    assert response.redirect_chain == [(url("refused", study), 302)]
    assert response.status_code == 400
    text = response.content.decode()
    assert f"{name} is {problem}" in text or f"missing {name}" in text
    assert "open the study again from Prolific" in text
    if len(value) > 3:
        assert value not in text  # never echoed back, as markup or otherwise
    assert not Participant.objects.exists()
    logged = refusals("entry_refused")
    assert len(logged) == 1
    assert value.strip() == "" or value not in logged[0]
    # The browser got no participant: the study's pages stay closed to it.
    assert client.get(url("consent", study)).status_code == 403


def test_a_non_utf8_prolific_pid_in_the_query_string_is_refused(study):
    query = f"PROLIFIC_PID=%FF%FEPID0001&STUDY_ID={STUDY_ID}&SESSION_ID={prolific_id(1)}"
    response = Client().get(f"{url('entry', study)}?{query}", follow=True)
    assert response.status_code == 400
    assert b"PROLIFIC_PID is not a valid" in response.content
    assert not Participant.objects.exists()
    assert len(refusals("entry_refused")) == 1


def test_a_known_pid_with_a_mismatched_study_id_gets_no_session(study):
    at_questions(Client(), study)
    before = state(study)
    stranger = Client()
    response = stranger.get(
        url("entry", study), {**PARAMS, "STUDY_ID": prolific_id("OTHERSTUDY1")}, follow=True
    )
    assert response.status_code == 400
    assert b"STUDY_ID does not belong to this study" in response.content
    assert stranger.get(url("question", study, position=1)).status_code == 403
    assert state(study) == before
    assert len(refusals("entry_refused")) == 1


def test_a_reused_session_id_gives_the_second_pid_no_session(study):
    at_questions(Client(), study)
    before = state(study)
    impostor = Client()
    response = impostor.get(
        url("entry", study), {**PARAMS, "PROLIFIC_PID": prolific_id("PIDIMPOSTOR")}, follow=True
    )
    assert response.status_code == 400
    assert impostor.get(url("question", study, position=1)).status_code == 403
    api_state = impostor.get(reverse("api-state", kwargs={"slug": study.slug}))
    assert api_state.status_code == 403
    assert state(study) == before


def test_a_nul_byte_in_the_user_agent_is_dropped_not_a_server_error(study):
    # PostgreSQL cannot store NUL in text: this was a 500 there.
    response = Client().get(url("entry", study), PARAMS, HTTP_USER_AGENT="Mozilla/5.0\x00<x>")
    assert response.status_code == 302
    assert Participant.objects.get().user_agent == "Mozilla/5.0<x>"


# Oversized, non-UTF-8 and malformed bodies ---------------------------------------------------

FORM_PAGES = ["consent", "demographics", "instructions", "question", "debrief"]


def on_page(study, page: str) -> tuple[Client, str, str]:
    """A browser that checks CSRF as in production, showing `page`: (client, URL, CSRF token).

    Each page is fetched before it is submitted, as a browser does (the fetch records the
    visit and sets the CSRF cookie the submission must carry).
    """
    client = Client(enforce_csrf_checks=True)
    client.get(url("entry", study), PARAMS)
    steps = [
        ("consent", {"decision": "agree"}),
        ("demographics", {"gender": "woman", "age_group": "18-29"}),
        ("instructions", {}),
    ]
    for name, data in steps:
        client.get(url(name, study))
        token = client.cookies["csrftoken"].value
        if name == page:
            return client, url(name, study), token
        response = client.post(url(name, study), {**data, "csrfmiddlewaretoken": token})
        assert response.status_code == 302
    p = Participant.objects.get(study=study)
    if page == "debrief":
        for _ in range(study.question_count):
            p = helpers.answer_current(p).participant
    path = url(page, study) if page == "debrief" else url("question", study, position=1)
    assert client.get(path).status_code == 200
    return client, path, client.cookies["csrftoken"].value


def form_post(client: Client, path: str, body: bytes):
    return client.generic("POST", path, body, content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("page", FORM_PAGES)
def test_an_oversized_form_body_is_400_logged_and_changes_nothing(study, page, caplog):
    client, path, token = on_page(study, page)
    before = state(study)
    padding = b"x" * django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = form_post(client, path, f"csrfmiddlewaretoken={token}&pad=".encode() + padding)
    assert response.status_code == 400
    assert b"Nothing was changed" in response.content  # templates/400.html, not a bare page
    assert state(study) == before
    assert any(r.name == "django.security.RequestDataTooBig" for r in caplog.records)


@pytest.mark.parametrize("page", FORM_PAGES)
def test_too_many_form_fields_are_400_logged_and_change_nothing(study, page, caplog):
    client, path, token = on_page(study, page)
    before = state(study)
    fields = "&".join(["selected=1"] * (django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = form_post(client, path, f"csrfmiddlewaretoken={token}&{fields}".encode())
    assert response.status_code == 400
    assert b"Nothing was changed" in response.content
    assert state(study) == before
    assert any(r.name == "django.security.TooManyFieldsSent" for r in caplog.records)


@pytest.mark.parametrize(
    ("page", "body", "message"),
    [
        ("consent", b"decision=\xff\xfeagree", b"Select a valid choice"),
        ("demographics", b"gender=wo\xffman&age_group=18-29", b"Select a valid choice"),
        ("question", b"question=\xff\xfe&selected=1&confidence=3", b"Please check your answer"),
        ("question", b"question={token}&selected=\xc3\x28&confidence=3", b"numbered 1 to 5"),
        ("question", b"question={token}&selected=1&confidence=\xff3", b"from 1 to 5"),
    ],
)
def test_non_utf8_form_bodies_are_400_with_a_message_and_change_nothing(study, page, body, message):
    client, path, csrf = on_page(study, page)
    p = Participant.objects.get(study=study)
    if page == "question":
        body = body.replace(b"{token}", answer_payload(p)["question"].encode())
    before = state(study)
    response = form_post(client, path, body + f"&csrfmiddlewaretoken={csrf}".encode())
    assert response.status_code == 400
    assert message in response.content
    assert state(study) == before
