"""Listing, approving, rejecting and returning submissions (survey/prolific/submissions.py)
against recorded responses of the documented API (tests/survey/prolific_replay.py, no network).
"""

import pytest
from django.utils import timezone

from survey import prolific
from survey.models import AuditEvent, Participant
from survey.prolific import submissions as prolific_submissions
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    participant_fixture,
    study_fixture,
)
from tests.survey.prolific_replay import PID, SUBMISSION, ReplayAdapter, client_for

pytestmark = pytest.mark.django_db


# --- list ----------------------------------------------------------------------------------


def test_list_reads_the_studys_results_and_filters_by_status(study):
    adapter = ReplayAdapter("study_submissions")
    rows = prolific.submissions_list(study=study, client=client_for(adapter))
    assert [r["status"] for r in rows] == ["AWAITING REVIEW", "APPROVED", "RETURNED"]
    assert len(adapter.sent) == 1
    adapter = ReplayAdapter("study_submissions")
    rows = prolific.submissions_list(study=study, status="returned", client=client_for(adapter))
    assert [r["id"] for r in rows] == ["64f1c0a2b3d4e5f6a7b8c903"]
    adapter = ReplayAdapter("study_submissions")
    rows = prolific.submissions_list(
        study=study, status="awaiting_review", client=client_for(adapter)
    )
    assert [r["participant_id"] for r in rows] == [PID]


def test_list_refuses_an_unknown_status_before_calling(study):
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="Unknown submission status 'DONE'"):
        prolific.submissions_list(study=study, status="DONE", client=client_for(adapter))
    assert adapter.sent == []


# --- approve -------------------------------------------------------------------------------


def test_bulk_approve_sends_study_and_submission_ids_and_audits_each(study, participant):
    other = Participant.objects.create(
        study=study,
        prolific_pid="5f0000000000000000000002",
        pseudonym="pseudo000000002",
        session_id="64f1c0a2b3d4e5f6a7b8c902",
        status=Participant.Status.COMPLETED,
    )
    adapter = ReplayAdapter("study_submissions", "bulk_approve")
    prolific.submissions_approve(
        study=study, participants=[participant, other], actor="bob", client=client_for(adapter)
    )
    assert adapter.body(1) == {"submission_ids": [SUBMISSION, "64f1c0a2b3d4e5f6a7b8c902"]}
    events = AuditEvent.objects.filter(action="prolific_approve")
    assert sorted(e.subject for e in events) == sorted([participant.pseudonym, "pseudo000000002"])


def test_bulk_approve_is_sent_in_sequential_batches(study, participant, monkeypatch):
    other = Participant.objects.create(
        study=study,
        prolific_pid="5f0000000000000000000002",
        pseudonym="pseudo000000002",
        session_id="64f1c0a2b3d4e5f6a7b8c902",
        status=Participant.Status.COMPLETED,
    )
    monkeypatch.setattr(prolific_submissions, "BULK_APPROVE_MAX", 1)
    adapter = ReplayAdapter("study_submissions", "bulk_approve", "bulk_approve")
    approval = prolific.submissions_approve(
        study=study, participants=[participant, other], actor="bob", client=client_for(adapter)
    )
    assert approval.approved == [participant, other]
    assert [adapter.body(i) for i in (1, 2)] == [
        {"submission_ids": [SUBMISSION]},
        {"submission_ids": ["64f1c0a2b3d4e5f6a7b8c902"]},
    ]
    assert AuditEvent.objects.filter(action="prolific_approve").count() == 2


def test_approve_refuses_participants_who_did_not_complete(study, participant):
    participant.status = Participant.Status.FAILED_ATTENTION
    participant.save()
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="Only completed"):
        prolific.submissions_approve(
            study=study, participants=[participant], actor="bob", client=client_for(adapter)
        )
    assert adapter.sent == []


def test_approve_of_verified_participants_calls_no_verification(study, participant):
    Participant.objects.filter(pk=participant.pk).update(session_verified_at=timezone.now())
    participant.refresh_from_db()
    adapter = ReplayAdapter("bulk_approve")
    approval = prolific.submissions_approve(
        study=study, participants=[participant], actor="bob", client=client_for(adapter)
    )
    assert approval.approved == [participant]
    assert approval.left_out == {}
    assert approval.summary() == "Asked Prolific to approve 1 submission(s)."


# --- reject --------------------------------------------------------------------------------


def test_reject_sends_category_and_message_and_is_audited(participant):
    adapter = ReplayAdapter("transition_reject")
    prolific.submission_reject(
        participant=participant,
        category="FAILED_CHECK",
        message=prolific.FAILED_CHECK_MESSAGE,
        actor="carol",
        client=client_for(adapter),
    )
    assert adapter.body(0) == {
        "action": "REJECT",
        "message": prolific.FAILED_CHECK_MESSAGE,
        "rejection_category": "FAILED_CHECK",
    }
    assert len(prolific.FAILED_CHECK_MESSAGE) >= 100
    event = AuditEvent.objects.get(action="prolific_reject")
    assert event.detail["category"] == "FAILED_CHECK"


@pytest.mark.parametrize(
    ("category", "message", "error"),
    [
        ("FAILED_CHECK", "Too short.", "at least 100 characters"),
        ("RUDE", prolific.FAILED_CHECK_MESSAGE, "not one of Prolific's"),
    ],
)
def test_reject_validates_before_sending(participant, category, message, error):
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match=error):
        prolific.submission_reject(
            participant=participant,
            category=category,
            message=message,
            actor="carol",
            client=client_for(adapter),
        )
    assert adapter.sent == []


# --- return --------------------------------------------------------------------------------


def test_return_request_sends_reasons_and_is_audited(participant):
    participant.status = Participant.Status.NO_CONSENT
    participant.save()
    adapter = ReplayAdapter("request_return")
    prolific.submission_request_return(
        participant=participant, actor="erin", client=client_for(adapter)
    )
    assert adapter.body(0) == {"request_return_reasons": prolific.NO_CONSENT_RETURN_REASONS}
    assert AuditEvent.objects.get().action == "prolific_return"
