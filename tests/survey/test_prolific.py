"""Prolific operations against recorded responses of the documented API (no network).

The recordings (tests/survey/recordings/prolific/*.json) are replayed by a requests transport
adapter, so the real client code runs: headers, JSON bodies, retries, errors. Each success
recording carries the fields of its page under https://docs.prolific.com/api-reference/ (see
docs/pilot.md); a recording with ``"body": null`` is an answer without content.
"""

import json
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from survey import prolific
from survey.dataprotection import submission_hash
from survey.models import AuditEvent, Participant, ProlificBonus, pseudonymise
from survey.prolific import submissions as prolific_submissions
from survey.prolific.bonuses import _bonus_csv, _paying
from survey.prolific.client import _next_link
from tests.factories import StudyFactory
from tests.survey.prolific_replay import (
    PID,
    STUDY_ID,
    SUBMISSION,
    TOKEN,
    ReplayAdapter,
    client_for,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return StudyFactory(slug="s1", prolific_study_id=STUDY_ID)


@pytest.fixture
def participant(study) -> Participant:
    return Participant.objects.create(
        study=study,
        prolific_pid=PID,
        pseudonym=pseudonymise(PID),
        session_id=SUBMISSION,
        status=Participant.Status.COMPLETED,
    )


# --- verify --------------------------------------------------------------------------------


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


def test_next_link_is_followed_only_when_a_page_names_one():
    assert _next_link({"results": []}) is None
    assert _next_link({"results": [], "_links": {"next": {"href": None}}}) is None
    href = "https://api.prolific.com/api/v1/studies/x/submissions/?page=2"
    assert _next_link({"results": [], "_links": {"next": {"href": href}}}) == href


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


def test_approve_refuses_participants_who_did_not_complete(study, participant):
    participant.status = Participant.Status.FAILED_ATTENTION
    participant.save()
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="Only completed"):
        prolific.submissions_approve(
            study=study, participants=[participant], actor="bob", client=client_for(adapter)
        )
    assert adapter.sent == []


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


# --- bonuses -------------------------------------------------------------------------------


def test_bonus_is_set_up_then_paid_and_a_second_one_is_refused(participant):
    adapter = ReplayAdapter("bonus_setup", "bonus_pay")
    client = client_for(adapter)
    bonus = prolific.bonus_pay(
        participant=participant, amount_pence=150, actor="dan", client=client
    )
    assert bonus.state == ProlificBonus.State.PAID
    assert bonus.prolific_bonus_id == "6500aa11bb22cc33dd44ee55"
    assert adapter.body(0) == {"study_id": STUDY_ID, "csv_bonuses": f"{SUBMISSION},1.50\n"}
    with pytest.raises(prolific.ProlificError, match="already paid"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    assert len(adapter.sent) == 2  # the refusal sent nothing
    steps = [e.detail["step"] for e in AuditEvent.objects.filter(action="prolific_bonus")]
    assert sorted(steps) == ["paid", "set up"]


@pytest.mark.parametrize(
    ("pence", "line"),
    [(150, "1.50"), (5, "0.05"), (3000, "30.00"), (1, "0.01")],
)
def test_bonus_csv_gives_the_amount_in_the_currencys_major_unit(pence, line):
    assert _bonus_csv(SUBMISSION, pence) == f"{SUBMISSION},{line}\n"


def test_bonus_is_paid_by_submission_id_even_after_the_prolific_id_was_purged(participant):
    participant.prolific_pid = ""
    participant.save()
    adapter = ReplayAdapter("bonus_setup", "bonus_pay")
    bonus = prolific.bonus_pay(
        participant=participant, amount_pence=150, actor="dan", client=client_for(adapter)
    )
    assert bonus.state == ProlificBonus.State.PAID
    assert adapter.body(0)["csv_bonuses"] == f"{SUBMISSION},1.50\n"


def test_bonus_whose_pay_step_failed_is_resumed_by_paying_never_set_up_twice(participant):
    adapter = ReplayAdapter("bonus_setup", "bonus_pay_unavailable", "bonus_pay")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError, match="503"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    stuck = ProlificBonus.objects.get()
    assert stuck.state == ProlificBonus.State.SETUP
    assert stuck.prolific_bonus_id == "6500aa11bb22cc33dd44ee55"
    assert "503" in stuck.error

    resumed = prolific.bonus_pay(
        participant=participant, amount_pence=150, actor="dan", client=client
    )
    assert resumed.state == ProlificBonus.State.PAID
    paths = [r.path_url for r in adapter.sent]
    assert paths.count("/api/v1/submissions/bonus-payments/") == 1  # set up once only
    with pytest.raises(prolific.ProlificError, match="already paid"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    assert len(adapter.sent) == 3
    assert ProlificBonus.objects.count() == 1


def test_bonus_with_another_amount_for_a_stuck_submission_is_refused(participant):
    adapter = ReplayAdapter("bonus_setup", "bonus_pay_unavailable")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    with pytest.raises(prolific.ProlificError, match="cannot be changed to 300"):
        prolific.bonus_pay(participant=participant, amount_pence=300, actor="dan", client=client)
    assert len(adapter.sent) == 2


def test_bonus_refused_at_set_up_can_be_tried_again(participant):
    adapter = ReplayAdapter("bonus_setup_bad_request", "bonus_setup", "bonus_pay")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError, match="has not taken part in this study"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    assert ProlificBonus.objects.get().state == ProlificBonus.State.FAILED
    bonus = prolific.bonus_pay(
        participant=participant, amount_pence=150, actor="dan", client=client
    )
    assert bonus.state == ProlificBonus.State.PAID


def test_bonus_whose_set_up_outcome_is_unknown_is_never_set_up_again(participant):
    ProlificBonus.objects.create(
        study=participant.study,
        submission_id=SUBMISSION,
        participant=participant,
        amount_pence=150,
        error="Could not reach Prolific",
    )
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="never set up twice"):
        prolific.bonus_pay(
            participant=participant, amount_pence=150, actor="dan", client=client_for(adapter)
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


# --- the command ---------------------------------------------------------------------------


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


# --- admin actions -------------------------------------------------------------------------


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


# --- integrity (issue 15): verification, approval, the audit log, bonuses --------------------


def completed(study, pid: str, session: str, **fields: object) -> Participant:
    return Participant.objects.create(
        study=study,
        prolific_pid=pid,
        pseudonym=pseudonymise(pid),
        session_id=session,
        status=fields.pop("status", Participant.Status.COMPLETED),
        **fields,
    )


def verified_at(participant: Participant):
    return Participant.objects.values_list("session_verified_at", flat=True).get(pk=participant.pk)


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


def test_bonus_over_the_maximum_is_refused_before_any_call(participant, settings):
    settings.FVR_MAX_BONUS_PENCE = 500
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="over this server's maximum of 500"):
        prolific.bonus_pay(
            participant=participant, amount_pence=501, actor="dan", client=client_for(adapter)
        )
    assert adapter.sent == []
    assert not ProlificBonus.objects.exists()
    adapter = ReplayAdapter("bonus_setup", "bonus_pay")
    bonus = prolific.bonus_pay(
        participant=participant, amount_pence=500, actor="dan", client=client_for(adapter)
    )
    assert bonus.state == ProlificBonus.State.PAID


def test_bonus_maximum_defaults_to_ten_pounds(participant):
    adapter = ReplayAdapter()
    with pytest.raises(prolific.ProlificError, match="maximum of 1000"):
        prolific.bonus_pay(
            participant=participant, amount_pence=3000, actor="dan", client=client_for(adapter)
        )
    assert adapter.sent == []


def test_bonus_being_paid_by_another_caller_is_refused_until_its_claim_is_stale(participant):
    bonus = ProlificBonus.objects.create(
        study=participant.study,
        submission_id=SUBMISSION,
        participant=participant,
        amount_pence=150,
        prolific_bonus_id="6500aa11bb22cc33dd44ee55",
        error=_paying(timezone.now() - timezone.timedelta(minutes=1)),
    )
    adapter = ReplayAdapter("bonus_pay")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError, match="is being paid"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    assert adapter.sent == []
    # A claim older than any pay call can take was interrupted: paying is tried again.
    stale = timezone.now() - prolific.PAY_CLAIM_STALE - timezone.timedelta(seconds=1)
    ProlificBonus.objects.filter(pk=bonus.pk).update(error=_paying(stale))
    paid = prolific.bonus_pay(participant=participant, amount_pence=150, actor="dan", client=client)
    assert paid.state == ProlificBonus.State.PAID
    assert [r.path_url for r in adapter.sent] == [
        "/api/v1/bulk-bonus-payments/6500aa11bb22cc33dd44ee55/pay/"
    ]


class TransactionWatch(ReplayAdapter):
    """Records, for every request, whether the database connection was inside a transaction."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.in_transaction: list[bool] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.in_transaction.append(transaction.get_connection().in_atomic_block)
        return super().send(request, **kwargs)


@pytest.mark.django_db(transaction=True)  # no test-wide transaction around the calls
def test_bonus_calls_prolific_outside_any_database_transaction(participant):
    adapter = TransactionWatch("bonus_setup", "bonus_pay_unavailable", "bonus_pay")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError, match="503"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)
    bonus = prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)
    assert bonus.state == ProlificBonus.State.PAID
    assert adapter.in_transaction == [False, False, False]


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
