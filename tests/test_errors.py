"""Error pages: 503 + Retry-After when the database is unreachable, 500 otherwise, 400/404 pages."""

import pytest
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from config.errors import RETRY_AFTER_SECONDS
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets


def database_restarting(request: HttpRequest) -> HttpResponse:
    # What Django raises when PostgreSQL is restarted under a request (fast shutdown).
    raise OperationalError("terminating connection due to administrator command")


def connection_gone(request: HttpRequest) -> HttpResponse:
    raise InterfaceError("connection already closed")


def a_bug(request: HttpRequest) -> HttpResponse:
    raise ZeroDivisionError("a bug")


urlpatterns = [
    path("s/restarting/", database_restarting),
    path("s/gone/", connection_gone),
    path("s/bug/", a_bug),
    path("api/v1/restarting/", database_restarting),
]
handler500 = "config.errors.server_error"


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
@pytest.mark.parametrize("url", ["/s/restarting/", "/s/gone/"])
def test_an_unreachable_database_is_503_with_retry_after_and_a_reassuring_page(client, url):
    response = client.get(url)
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert "Everything you have already submitted is saved" in body
    assert f'http-equiv="refresh" content="{RETRY_AFTER_SECONDS}"' in body


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_api_clients_get_json_for_an_unreachable_database(client):
    response = client.post("/api/v1/restarting/", {}, content_type="application/json")
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "briefly unavailable" in response.json()["detail"]


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_other_errors_stay_500_without_retry_after(client):
    response = client.get("/s/bug/")
    assert response.status_code == 500
    assert "Retry-After" not in response
    assert b"Something went wrong on our side" in response.content


@override_settings(DEBUG=False)
@pytest.mark.django_db
def test_unknown_pages_and_unreadable_requests_get_pages_that_say_what_to_do(client):
    missing = client.get("/no/such/page/")
    assert missing.status_code == 404
    assert b"open the study again from your Prolific link" in missing.content
    # More form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django's own 400, our page.
    study = study_with_match_sets()
    ids = {
        "PROLIFIC_PID": prolific_id("PIDERRORS01"),
        "STUDY_ID": STUDY_ID,
        "SESSION_ID": prolific_id("SESSERR01"),
    }
    assert client.get(f"/s/{study.slug}/", ids).status_code == 302
    with override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=3):
        refused = client.post(f"/s/{study.slug}/consent/", {f"f{i}": "x" for i in range(10)})
    assert refused.status_code == 400
    assert b"Nothing was changed" in refused.content
