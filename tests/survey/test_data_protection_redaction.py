"""Data protection: Prolific IDs kept out of URLs, logs and error reports (survey.redaction)."""

import io
import logging

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from survey import services
from survey.redaction import MASK
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets

pytestmark = pytest.mark.django_db

PID = prolific_id("PIDSECRET77")
SESSION = prolific_id("SESSSECRET77")
ENTRY_QUERY = {"PROLIFIC_PID": PID, "STUDY_ID": STUDY_ID, "SESSION_ID": SESSION}


def test_entry_redirects_away_from_the_prolific_ids_in_the_url() -> None:
    study = study_with_match_sets()
    client = Client()
    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)
    assert response.status_code == 302
    assert response["Location"] == reverse("survey:consent", kwargs={"slug": study.slug})
    assert response["Referrer-Policy"] == "same-origin"
    # Every page after that has a URL without the IDs.
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert PID not in page.request["PATH_INFO"] + page.request.get("QUERY_STRING", "")
    assert PID.encode() not in page.content


@pytest.fixture
def failing_entry(monkeypatch: pytest.MonkeyPatch):
    """Make admission fail the way an unexpected database error would: quoting the ID."""

    def explode(**kwargs: object) -> None:
        raise RuntimeError(f"Failing row contains ({kwargs['prolific_pid']}, ...)")

    monkeypatch.setattr(services, "participant_enter", explode)


def test_error_mail_to_admins_never_contains_the_prolific_ids(settings, failing_entry) -> None:
    settings.ADMINS = [("Ops", "ops@example.org")]
    study = study_with_match_sets()
    client = Client(raise_request_exception=False)

    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)

    assert response.status_code == 500
    assert len(mail.outbox) == 1
    report = mail.outbox[0]
    text = report.subject + report.body
    assert "RuntimeError" in text
    assert "Failing row contains" in text
    for secret in (PID, SESSION):
        assert secret not in text
    assert f"PROLIFIC_PID={MASK}" in text


def test_debug_error_page_never_contains_the_prolific_ids(settings, failing_entry) -> None:
    settings.DEBUG = True
    study = study_with_match_sets()
    client = Client(raise_request_exception=False)

    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)

    assert response.status_code == 500
    page = response.content.decode()
    assert "RuntimeError" in page
    assert "Failing row contains" in page
    for secret in (PID, SESSION):
        assert secret not in page


def test_development_server_log_masks_the_prolific_ids() -> None:
    logger = logging.getLogger("django.server")
    handler = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logger.info(
            '"%s" %s %s',
            f"GET /s/x/?PROLIFIC_PID={PID}&STUDY_ID=S1&SESSION_ID=S2 HTTP/1.1",
            "302",
            "0",
        )
    finally:
        handler.setStream(previous)
    line = stream.getvalue()
    assert "GET /s/x/?PROLIFIC_PID=" in line
    assert PID not in line
    assert f"SESSION_ID={MASK}" in line
