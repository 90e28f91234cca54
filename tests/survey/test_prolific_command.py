"""The `prolific` management command (survey/management/commands/prolific.py) against
recorded responses of the documented API (tests/survey/prolific_replay.py, no network).
"""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from survey.models import AuditEvent, Participant
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    completed,
    participant_fixture,
    study_fixture,
    verified_at,
)
from tests.survey.prolific_replay import PID, SUBMISSION, ReplayAdapter

pytestmark = pytest.mark.django_db


def command(*args: str) -> str:
    out = StringIO()
    call_command("prolific", *args, stdout=out)
    return out.getvalue()


def test_command_verify_all_reports_each_participant(participant, replay):
    replay["adapter"] = ReplayAdapter("study_submissions")
    out = command("s1", "verify")
    assert f"{participant.pseudonym}  {SUBMISSION}  ok" in out
    assert "1 verified, 0 not" in out
    assert AuditEvent.objects.get().actor == "command:prolific"


def test_command_reject_failed_attention_uses_failed_check(participant, replay):
    participant.status = Participant.Status.FAILED_ATTENTION
    participant.save()
    replay["adapter"] = ReplayAdapter("transition_reject")
    out = command("s1", "reject", "--failed-attention")
    assert f"Rejected {participant.pseudonym} (FAILED_CHECK)" in out
    assert replay["adapter"].body(0)["rejection_category"] == "FAILED_CHECK"


def test_command_bonus_twice_is_refused(participant, replay):
    replay["adapter"] = ReplayAdapter("bonus_setup", "bonus_pay")
    command("s1", "bonus", participant.pseudonym, "--amount", "150")
    with pytest.raises(CommandError, match="already paid"):
        command("s1", "bonus", PID, "--amount", "150")  # by Prolific ID: the same participant


def test_command_list_and_unknown_token_error(study, participant, replay):
    replay["adapter"] = ReplayAdapter("study_submissions")
    out = command("s1", "list", "--status", "APPROVED")
    assert "1 submission(s)." in out
    replay["adapter"] = ReplayAdapter("study_submissions")
    out = command("s1", "list")
    assert f"{SUBMISSION}  AWAITING REVIEW  {participant.pseudonym}" in out
    assert "3 submission(s)." in out
    with pytest.raises(CommandError, match="Unknown submission status"):
        command("s1", "list", "--status", "FINISHED")
    replay["adapter"] = ReplayAdapter("unauthorized")
    with pytest.raises(CommandError, match="FVR_PROLIFIC_TOKEN is missing or invalid"):
        command("s1", "verify", participant.pseudonym)


def test_command_verify_checks_finished_unverified_participants_against_the_study_list(
    study, participant, replay
):
    returned = completed(
        study, "5f0000000000000000000003", "64f1c0a2b3d4e5f6a7b8c903", status="returned"
    )
    # Prolific lists this SESSION_ID, but as another participant's submission.
    impostor = completed(study, "5f00000000000000000000ff", "64f1c0a2b3d4e5f6a7b8c902")
    unknown = completed(study, "5f00000000000000000000ee", "64f1c0a2b3d4e5f6a7b8c9ee")
    busy = completed(study, "5f00000000000000000000dd", "64f1c0a2b3d4e5f6a7b8c9dd", status="active")
    earlier = timezone.now() - timezone.timedelta(days=1)
    done = completed(
        study, "5f00000000000000000000cc", "64f1c0a2b3d4e5f6a7b8c9cc", session_verified_at=earlier
    )
    replay["adapter"] = ReplayAdapter("study_submissions")

    out = command("s1", "verify")

    assert len(replay["adapter"].sent) == 1  # one read of the list, not one call per person
    assert f"{participant.pseudonym}  {SUBMISSION}  ok" in out
    assert f"{returned.pseudonym}  64f1c0a2b3d4e5f6a7b8c903  ok" in out
    assert "another Prolific participant" in out
    assert "Prolific lists no submission with this SESSION_ID" in out
    assert "2 verified, 2 not." in out
    assert busy.pseudonym not in out  # still taking part: not finished
    assert done.pseudonym not in out  # verified before
    assert verified_at(participant) is not None
    assert verified_at(returned) is not None
    assert verified_at(impostor) is None
    assert verified_at(unknown) is None
    assert verified_at(done) == earlier
    assert "3 participant(s) verified in all, 2 finished participant(s) unverified" in out
    assert AuditEvent.objects.filter(action="prolific_verify").count() == 4


def test_approve_verifies_first_and_leaves_out_the_unverified_and_the_flagged(
    study, participant, replay
):
    flagged = completed(
        study,
        "5f0000000000000000000002",
        "64f1c0a2b3d4e5f6a7b8c902",
        integrity_flags=["reentry_same_browser"],
    )
    stranger = completed(study, "5f00000000000000000000ee", "64f1c0a2b3d4e5f6a7b8c9ee")
    replay["adapter"] = ReplayAdapter("study_submissions", "bulk_approve")

    out = command("s1", "approve", "--all-completed")

    adapter = replay["adapter"]
    assert adapter.body(1) == {"submission_ids": [SUBMISSION]}
    assert "Asked Prolific to approve 1 submission(s)." in out
    assert f"Left out {flagged.pseudonym}: integrity flags (reentry_same_browser)" in out
    assert f"Left out {stranger.pseudonym}: not verified: Prolific lists no submission" in out
    approved = AuditEvent.objects.filter(action="prolific_approve")
    assert [e.subject for e in approved] == [participant.pseudonym]
    assert verified_at(participant) is not None
    assert verified_at(flagged) is None  # flagged: not even verified, never approved
