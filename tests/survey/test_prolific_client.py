"""The Prolific client (survey/prolific/client.py) against recorded responses of the
documented API (tests/survey/prolific_replay.py, no network): the token, errors and retries,
paging, and the bulk-approve body.
"""

import pytest
import requests

from survey import prolific
from survey.models import AuditEvent
from survey.prolific.client import _next_link
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    participant_fixture,
    study_fixture,
)
from tests.survey.prolific_replay import PID, STUDY_ID, SUBMISSION, ReplayAdapter, client_for

pytestmark = pytest.mark.django_db


# --- errors and retries --------------------------------------------------------------------


def test_401_says_the_token_is_missing_or_invalid(participant):
    adapter = ReplayAdapter("unauthorized")
    with pytest.raises(prolific.ProlificError, match="FVR_PROLIFIC_TOKEN is missing or invalid"):
        client_for(adapter).submission(SUBMISSION)


def test_no_token_sends_nothing(participant, settings):
    settings.FVR_PROLIFIC_TOKEN = ""
    adapter = ReplayAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(prolific.ProlificError, match="FVR_PROLIFIC_TOKEN is missing"):
        prolific.ProlificClient(session=session).submission(SUBMISSION)
    assert adapter.sent == []


def test_token_comes_from_the_environment_setting(settings):
    settings.FVR_PROLIFIC_TOKEN = "from-env"
    adapter = ReplayAdapter("submission_get")
    session = requests.Session()
    session.mount("https://", adapter)
    prolific.ProlificClient(session=session).submission(SUBMISSION)
    assert adapter.sent[0].headers["Authorization"] == "Token from-env"


def test_429_is_retried_with_exponential_back_off_then_succeeds(participant):
    adapter = ReplayAdapter("rate_limited", "rate_limited", "submission_get")
    sleeps: list[float] = []
    body = client_for(adapter, sleeps=sleeps).submission(SUBMISSION)
    assert body["participant"] == PID
    assert sleeps == [1.0, 2.0]
    assert len(adapter.sent) == 3


def test_429_with_retry_after_waits_that_long(participant):
    adapter = ReplayAdapter("rate_limited_retry_after", "submission_get")
    sleeps: list[float] = []
    client_for(adapter, sleeps=sleeps).submission(SUBMISSION)
    assert sleeps == [2.0]


def test_429_that_never_ends_gives_up_with_a_clear_error():
    adapter = ReplayAdapter(*["rate_limited"] * (prolific.MAX_RETRIES + 1))
    sleeps: list[float] = []
    with pytest.raises(prolific.ProlificError, match="rate limiting") as info:
        client_for(adapter, sleeps=sleeps).submission(SUBMISSION)
    assert info.value.status == 429
    assert len(sleeps) == prolific.MAX_RETRIES


def test_400_shows_prolifics_error_detail(participant):
    adapter = ReplayAdapter("transition_bad_request")
    with pytest.raises(prolific.ProlificError, match="already approved") as info:
        prolific.submission_reject(
            participant=participant,
            category="FAILED_CHECK",
            message=prolific.FAILED_CHECK_MESSAGE,
            actor="alice",
            client=client_for(adapter),
        )
    assert info.value.status == 400
    assert not AuditEvent.objects.exists()  # nothing happened, so nothing is logged


# --- paging --------------------------------------------------------------------------------


def test_next_link_is_followed_only_when_a_page_names_one():
    assert _next_link({"results": []}) is None
    assert _next_link({"results": [], "_links": {"next": {"href": None}}}) is None
    href = "https://api.prolific.com/api/v1/studies/x/submissions/?page=2"
    assert _next_link({"results": [], "_links": {"next": {"href": href}}}) == href


# --- bulk approve --------------------------------------------------------------------------


def test_bulk_approve_by_participant_ids_sends_the_study_id_too():
    adapter = ReplayAdapter("bulk_approve")
    client_for(adapter).bulk_approve(study_id=STUDY_ID, participant_ids=[PID])
    assert adapter.body(0) == {"study_id": STUDY_ID, "participant_ids": [PID]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"submission_ids": [SUBMISSION], "study_id": STUDY_ID},
        {"participant_ids": [PID]},
        {},
    ],
)
def test_bulk_approve_refuses_a_mixed_or_incomplete_body(kwargs):
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="either submission IDs, or a study ID"):
        client_for(adapter).bulk_approve(**kwargs)
    assert adapter.sent == []
