"""The signed cookie that says which participant a browser is (survey.browser)."""

import time

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from survey import browser
from survey.models import Participant
from tests.factories import prolific_id, study_with_match_sets
from tests.settings_helpers import shipped_keys
from tests.survey.helpers import browser_participant_id
from tests.survey.http_helpers import PARAMS, answer_payload, at_questions, url

pytestmark = pytest.mark.django_db


def test_the_cookie_names_the_participant_by_row_id_and_holds_no_prolific_id():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    value = client.cookies[browser.COOKIE].value
    assert browser_participant_id(client, study) == p.pk
    assert signing.loads(value, salt=browser.SALT) == {study.slug: p.pk}
    for secret in PARAMS.values():
        assert secret not in value
    morsel = client.cookies[browser.COOKIE]
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    # Nothing is stored server-side for a participant's browser.
    assert "sessionid" not in client.cookies


def test_a_forged_or_edited_cookie_is_refused_and_changes_nothing():
    study = study_with_match_sets()
    victim = at_questions(Client(), study)
    attacker = Client()
    params = {
        **PARAMS,
        "PROLIFIC_PID": prolific_id("PIDATTACK01"),
        "SESSION_ID": prolific_id("SESSATTACK01"),
    }
    at_questions(attacker, study, params)
    # Signed with another key: a participant id the attacker chose.
    forged = signing.dumps({study.slug: victim.pk}, salt=browser.SALT, key="not-the-secret-key")
    for value in (forged, attacker.cookies[browser.COOKIE].value[:-2] + "xx", "garbage"):
        attacker.cookies[browser.COOKIE] = value
        response = attacker.get(url("question", study, position=1))
        assert response.status_code == 403
        assert b"open the study again from your Prolific link" in response.content
    assert Participant.objects.get(pk=victim.pk).current_position == 1


def test_no_key_that_ships_in_the_repository_can_sign_a_participant_cookie(rf):
    study = study_with_match_sets()
    victim = at_questions(Client(), study)
    claim = {study.slug: victim.pk}
    attacker = Client()
    # The claim signed with the configured key is accepted: only the key differs below.
    attacker.cookies[browser.COOKIE] = signing.dumps(claim, salt=browser.SALT)
    assert attacker.get(url("question", study, position=1)).status_code == 200
    for key in shipped_keys():
        forged = signing.dumps(claim, salt=browser.SALT, key=key)
        request = rf.get("/")
        request.COOKIES[browser.COOKIE] = forged
        assert browser.browser_participant(request, study.slug) is None, key
        attacker.cookies[browser.COOKIE] = forged
        assert attacker.get(url("question", study, position=1)).status_code == 403, key


def test_a_cookie_for_one_study_does_not_admit_to_another():
    first, second = study_with_match_sets(slug="first"), study_with_match_sets(slug="second")
    client = Client()
    p = at_questions(client, first)
    # The same row id, claimed for the other study under a valid signature, is still refused:
    # the participant must belong to the study in the URL.
    client.cookies[browser.COOKIE] = signing.dumps({second.slug: p.pk}, salt=browser.SALT)
    assert client.get(url("consent", second)).status_code == 403


def test_entering_a_second_study_keeps_the_first():
    first, second = study_with_match_sets(slug="first"), study_with_match_sets(slug="second")
    client = Client()
    p1 = at_questions(client, first)
    params = {
        **PARAMS,
        "PROLIFIC_PID": prolific_id("PIDVIEW0002"),
        "SESSION_ID": prolific_id("SESSVIEW02"),
    }
    p2 = at_questions(client, second, params)
    assert browser_participant_id(client, first) == p1.pk
    assert p2.study == second
    assert browser_participant_id(client, second) == p2.pk
    assert client.get(url("question", first, position=1)).status_code == 200


def test_the_cookie_expires_with_the_session_age(settings, monkeypatch):
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    assert client.get(url("question", study, position=1)).status_code == 200
    # The same claim, signed just over SESSION_COOKIE_AGE ago.
    signed_at = time.time() - settings.SESSION_COOKIE_AGE - 5
    monkeypatch.setattr(signing.time, "time", lambda: signed_at)
    old = signing.dumps({study.slug: p.pk}, salt=browser.SALT)
    monkeypatch.undo()
    client.cookies[browser.COOKIE] = old
    assert client.get(url("question", study, position=1)).status_code == 403


def test_participant_pages_and_answers_read_no_session_row():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    with CaptureQueriesContext(connection) as captured:
        page = client.get(url("question", study, position=1))
        client.post(url("question", study, position=1), answer_payload(p))
    assert page.status_code == 200
    assert not [q for q in captured.captured_queries if "django_session" in q["sql"]]
