"""What every Prolific operation shares (survey/prolific/audit.py): its audit event keeps the
submission only as a keyed hash, never a raw submission or Prolific ID; and no operation calls
Prolific inside a database transaction. Against recorded responses of the documented API
(tests/survey/prolific_replay.py, no network).
"""

import json

import pytest

from survey import prolific
from survey.dataprotection import submission_hash
from survey.models import AuditEvent, Participant, pseudonymise
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    TransactionWatch,
    participant_fixture,
    study_fixture,
)
from tests.survey.prolific_replay import PID, SUBMISSION, ReplayAdapter, client_for

pytestmark = pytest.mark.django_db


def test_audit_log_keeps_a_keyed_hash_never_the_submission_or_prolific_id(study, participant):
    client = client_for(
        ReplayAdapter(
            "submission_not_found",  # its message quotes the URL with the SESSION_ID
            "submission_get",
            "bulk_approve",
            "transition_reject",
            "request_return",
            "bonus_setup_bad_request",  # Prolific's detail quotes the submission ID
            "bonus_setup",
            "bonus_pay",
        )
    )
    prolific.submission_verify(participant=participant, actor="a", client=client)
    prolific.submission_verify(participant=participant, actor="a", client=client)
    prolific.submissions_approve(study=study, participants=[participant], actor="a", client=client)
    prolific.submission_reject(
        participant=participant,
        category="OTHER",
        message=prolific.FAILED_CHECK_MESSAGE + f" (submission {SUBMISSION})",
        actor="a",
        client=client,
    )
    prolific.submission_request_return(participant=participant, actor="a", client=client)
    with pytest.raises(prolific.ProlificError):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)
    prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)

    events = list(AuditEvent.objects.values("subject", "detail"))
    assert len(events) == 8  # 2 verifications, approval, rejection, return, 3 bonus steps
    for event in events:
        stored = json.dumps(event)
        assert SUBMISSION not in stored
        assert PID not in stored
        assert event["subject"] == participant.pseudonym
        assert event["detail"]["submission_hash"] == submission_hash(SUBMISSION)
    assert submission_hash(SUBMISSION) == pseudonymise(SUBMISSION)  # HMAC, FVR_PSEUDONYM_KEY
    assert any(f"[submission {submission_hash(SUBMISSION)}]" in json.dumps(e) for e in events)


@pytest.mark.django_db(transaction=True)
def test_no_other_prolific_call_runs_inside_a_database_transaction(study, participant):
    adapter = TransactionWatch(
        "submission_get", "study_submissions", "bulk_approve", "transition_reject", "request_return"
    )
    client = client_for(adapter)
    prolific.submission_verify(participant=participant, actor="a", client=client)
    Participant.objects.filter(pk=participant.pk).update(session_verified_at=None)
    participant.refresh_from_db()
    prolific.submissions_approve(study=study, participants=[participant], actor="a", client=client)
    prolific.submission_reject(
        participant=participant,
        category="FAILED_CHECK",
        message=prolific.FAILED_CHECK_MESSAGE,
        actor="a",
        client=client,
    )
    prolific.submission_request_return(participant=participant, actor="a", client=client)
    assert adapter.queue == []
    assert adapter.in_transaction == [False] * 5
