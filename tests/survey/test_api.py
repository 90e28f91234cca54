"""REST API v1: participant answers (strict input) and staff-only exports."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from survey.exports import LONG_COLUMNS
from survey.models import Assignment, Participant, Response
from tests.factories import study_with_match_sets
from tests.survey.test_views import PARAMS, at_questions

pytestmark = pytest.mark.django_db


def answer_url(study) -> str:
    return reverse("api-answer", kwargs={"slug": study.slug})


def valid_body(p: Participant) -> dict:
    a = Assignment.objects.get(participant=p, position=p.current_position)
    return {
        "question": str(a.token),
        "selected_photos": [a.photo_number(2, p.study.k)],  # the true candidate (rank 2)
        "none_of_these": False,
        "confidence": 4,
    }


def test_state_then_answer_through_the_api():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    state = client.get(reverse("api-state", kwargs={"slug": study.slug})).json()
    assert state["step"] == "questions"
    assert state["current_position"] == 1
    assert state["question_total"] == 22
    body = valid_body(p)
    assert state["current_question"] == body["question"]
    created = client.post(answer_url(study), body, content_type="application/json")
    assert created.status_code == 201
    assert created.json()["status"] == "recorded"
    assert created.json()["next_url"].endswith("/question/2/")
    repeat = client.post(answer_url(study), body, content_type="application/json")
    assert repeat.status_code == 200
    assert repeat.json()["status"] == "already_recorded"
    assert Response.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"confidence": 0}, "confidence"),
        ({"confidence": 6}, "confidence"),
        ({"confidence": "3"}, "confidence"),
        ({"confidence": "3.0"}, "confidence"),
        ({"confidence": 3.0}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"confidence": None}, "confidence"),
        ({"selected_photos": [0]}, "selected_photos"),
        ({"selected_photos": ["2"]}, "selected_photos"),
        ({"question": "zzz"}, "question"),
    ],
)
def test_api_refuses_malformed_answers_with_400(change, field):
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    body = {**valid_body(p), **change}
    response = client.post(answer_url(study), body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Response.objects.exists()


def test_api_refuses_missing_confidence_and_rank_outside_k():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    body = valid_body(p)
    body.pop("confidence")
    missing = client.post(answer_url(study), body, content_type="application/json")
    assert missing.status_code == 400
    assert "confidence" in missing.json()
    outside = client.post(
        answer_url(study),
        {**valid_body(p), "selected_photos": [6]},
        content_type="application/json",
    )
    assert outside.status_code == 400
    assert "numbered 1 to 5" in outside.json()["detail"]
    empty = client.post(
        answer_url(study), {**valid_body(p), "selected_photos": []}, content_type="application/json"
    )
    assert empty.status_code == 400
    assert "at least one photo" in empty.json()["detail"]
    assert not Response.objects.exists()


def test_api_answer_for_a_later_question_is_409():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    later = Assignment.objects.get(participant=p, position=4)
    body = {**valid_body(p), "question": str(later.token)}
    response = client.post(answer_url(study), body, content_type="application/json")
    assert response.status_code == 409
    assert "you are on question 1" in response.json()["detail"]


def test_api_needs_a_participant_session_and_csrf():
    study = study_with_match_sets()
    anonymous = Client().post(answer_url(study), {}, content_type="application/json")
    assert anonymous.status_code == 403
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("survey:entry", kwargs={"slug": study.slug}), PARAMS)
    p = Participant.objects.get()
    forged = client.post(answer_url(study), {"question": "x"}, content_type="application/json")
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["detail"]
    assert not Response.objects.filter(participant=p).exists()


def test_exports_need_staff_login():
    study = study_with_match_sets()
    for name in ("api-responses", "api-responses-csv"):
        response = Client().get(reverse(name, kwargs={"slug": study.slug}))
        assert response.status_code == 403
    user = get_user_model().objects.create_user("someone", password="pw-123456789")
    client = Client()
    client.force_login(user)
    assert client.get(reverse("api-responses", kwargs={"slug": study.slug})).status_code == 403


def test_staff_export_is_long_format_with_pseudonyms():
    study = study_with_match_sets()
    participant_client = Client()
    p = at_questions(participant_client, study)
    participant_client.post(answer_url(study), valid_body(p), content_type="application/json")
    staff = get_user_model().objects.create_superuser("admin", password="pw-123456789")
    client = Client()
    client.force_login(staff)
    rows = client.get(reverse("api-responses", kwargs={"slug": study.slug})).json()
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == set(LONG_COLUMNS)
    assert row["participant"] == p.pseudonym
    assert row["selected_ranks"] == "2"
    assert row["any_correct"] is True  # factories put the true candidate at rank 2
    assert row["confidence"] == 4
    response = client.get(reverse("api-responses-csv", kwargs={"slug": study.slug}))
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0]["participant"] == p.pseudonym
    assert "PIDVIEW0001" not in text


def test_openapi_schema_describes_the_answer_endpoint():
    response = Client().get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/v1/studies/{slug}/answers/" in text
    assert "confidence" in text
