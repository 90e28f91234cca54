"""Verification of a participant's submission with Prolific (survey/prolific/verification.py)
against recorded responses of the documented API (tests/survey/prolific_replay.py, no network).
"""

import json

import pytest

from survey import prolific
from survey.models import AuditEvent
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    participant_fixture,
    study_fixture,
    verified_at,
)
from tests.survey.prolific_replay import PID, TOKEN, ReplayAdapter, client_for

pytestmark = pytest.mark.django_db


def test_verify_matches_participant_and_study_and_is_audited(participant):
    adapter = ReplayAdapter("submission_get")
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(adapter)
    )
    assert result.ok
    assert result.status == "AWAITING REVIEW"
    assert adapter.sent[0].headers["Authorization"] == f"Token {TOKEN}"
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.subject) == (
        "prolific_verify",
        "alice",
        participant.pseudonym,
    )
    assert event.detail["ok"] is True
    assert PID not in json.dumps(event.detail)  # the raw Prolific ID is never logged


def test_verify_reports_a_submission_of_another_participant(participant):
    adapter = ReplayAdapter("submission_get_other_participant")
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(adapter)
    )
    assert not result.ok
    assert result.problems == ["the submission belongs to another Prolific participant"]


def test_verify_of_an_unknown_submission_says_404_and_is_audited(participant):
    adapter = ReplayAdapter("submission_not_found")
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(adapter)
    )
    assert not result.ok
    assert "404" in result.problems[0]
    assert "SESSION_ID" in result.problems[0]
    assert AuditEvent.objects.get().detail["ok"] is False


def test_verify_needs_the_studys_prolific_id(participant):
    participant.study.prolific_study_id = ""
    participant.study.save()
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="has no Prolific STUDY_ID"):
        prolific.submission_verify(
            participant=participant, actor="alice", client=client_for(adapter)
        )
    assert adapter.sent == []


# --- the stored verification ---------------------------------------------------------------


def test_verify_stores_when_prolific_confirmed_the_submission(participant):
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(ReplayAdapter("submission_get"))
    )
    assert result.ok
    first = verified_at(participant)
    assert first is not None
    assert participant.session_verified_at == first
    # Confirmed again: the first confirmation's time stays.
    prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(ReplayAdapter("submission_get"))
    )
    assert verified_at(participant) == first
    # Prolific now answers that the submission is another participant's: no longer verified.
    mismatch = ReplayAdapter("submission_get_other_participant")
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(mismatch)
    )
    assert not result.ok
    assert verified_at(participant) is None


def test_verify_of_a_submission_of_another_study_is_not_stored(participant):
    participant.study.prolific_study_id = "64f1b000a1b2c3d4e5f6ffff"
    participant.study.save()
    result = prolific.submission_verify(
        participant=participant, actor="alice", client=client_for(ReplayAdapter("submission_get"))
    )
    assert not result.ok
    assert "not 64f1b000a1b2c3d4e5f6ffff" in result.problems[0]
    assert verified_at(participant) is None
