"""REST API v1: the participant's position and staff-only exports (answers: test_views)."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from survey.exports import LONG_COLUMNS
from survey.models import Assignment
from tests.factories import study_with_match_sets
from tests.survey.http_helpers import answer_fields, at_questions, script_answer

pytestmark = pytest.mark.django_db


def test_state_names_the_current_question_and_follows_the_answers():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    state_url = reverse("api-state", kwargs={"slug": study.slug})
    state = client.get(state_url).json()
    assert state["step"] == "questions"
    assert state["current_position"] == 1
    assert state["question_total"] == 22
    first = Assignment.objects.get(participant=p, position=1)
    assert state["current_question"] == str(first.token)
    assert script_answer(client, study, 1, answer_fields(first, [2], 4)).status_code == 200
    state = client.get(state_url).json()
    assert state["current_position"] == 2
    assert state["next_url"].endswith("/question/2/")


def test_state_needs_a_participant_session():
    study = study_with_match_sets()
    response = Client().get(reverse("api-state", kwargs={"slug": study.slug}))
    assert response.status_code == 403


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
    first = Assignment.objects.get(participant=p, position=1)
    script_answer(participant_client, study, 1, answer_fields(first, [2], 4))
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


def test_openapi_schema_has_no_answer_endpoint_beside_the_question_page():
    response = Client().get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/studies/{slug}/state/" in paths
    assert not [path for path in paths if "answer" in path]
