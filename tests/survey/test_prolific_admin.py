"""The participant admin's Prolific actions (survey/admin/participants.py) against recorded
responses of the documented API (tests/survey/prolific_replay.py, no network).
"""

import pytest
from django.utils import timezone

from survey.models import AuditEvent, Participant
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    completed,
    participant_fixture,
    study_fixture,
    verified_at,
)
from tests.survey.prolific_replay import ReplayAdapter

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("boss", password="x"))
    return client


def admin_action(client, action: str, *participants: Participant):
    from django.urls import reverse

    return client.post(
        reverse("admin:survey_participant_changelist"),
        {"action": action, "_selected_action": [p.pk for p in participants]},
        follow=True,
    )


def test_admin_rejects_failed_attention_as_failed_check(staff_client, participant, replay):
    participant.status = Participant.Status.FAILED_ATTENTION
    participant.save()
    replay["adapter"] = ReplayAdapter("transition_reject")
    response = admin_action(staff_client, "prolific_reject_failed_check", participant)
    assert "Rejected 1 submission(s) as FAILED_CHECK." in response.content.decode()
    body = replay["adapter"].body(0)
    assert body["rejection_category"] == "FAILED_CHECK"
    assert len(body["message"]) >= 100
    assert AuditEvent.objects.get(action="prolific_reject").actor == "boss"


def test_admin_reject_refuses_participants_who_passed(staff_client, participant, replay):
    replay["adapter"] = ReplayAdapter()
    response = admin_action(staff_client, "prolific_reject_failed_check", participant)
    assert "Only participants who failed the attention checks" in response.content.decode()
    assert replay["adapter"].sent == []


def test_admin_approves_and_requests_returns(staff_client, study, participant, replay):
    replay["adapter"] = ReplayAdapter("study_submissions", "bulk_approve")
    response = admin_action(staff_client, "prolific_approve", participant)
    assert "Asked Prolific to approve 1 submission(s)." in response.content.decode()
    participant.status = Participant.Status.NO_CONSENT
    participant.save()
    replay["adapter"] = ReplayAdapter("request_return")
    response = admin_action(staff_client, "prolific_request_return", participant)
    assert "Asked 1 participant(s) to return their submission." in response.content.decode()
    # The verification before the approval is on record too.
    assert AuditEvent.objects.filter(actor="boss").count() == 3


def test_admin_shows_prolifics_error(staff_client, participant, replay):
    Participant.objects.filter(pk=participant.pk).update(session_verified_at=timezone.now())
    replay["adapter"] = ReplayAdapter("unauthorized_bulk_approve")
    response = admin_action(staff_client, "prolific_approve", participant)
    assert "FVR_PROLIFIC_TOKEN is missing or invalid" in response.content.decode()


def test_admin_verifies_selected_participants(staff_client, study, participant, replay):
    stranger = completed(study, "5f00000000000000000000ee", "64f1c0a2b3d4e5f6a7b8c9ee")
    replay["adapter"] = ReplayAdapter("study_submissions")
    response = admin_action(staff_client, "prolific_verify", participant, stranger)
    page = response.content.decode()
    assert "Verified 1 participant(s) with Prolific." in page
    assert f"Not verified: {stranger.pseudonym} (Prolific lists no submission" in page
    assert verified_at(participant) is not None
    assert verified_at(stranger) is None
    assert AuditEvent.objects.filter(actor="boss", action="prolific_verify").count() == 2
