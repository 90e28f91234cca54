"""Bonuses (survey/prolific/bonuses.py) against recorded responses of the documented API
(tests/survey/prolific_replay.py, no network): set up once, paid once, resumed after a failed
pay call, capped by FVR_MAX_BONUS_PENCE, and never called inside a database transaction.
"""

import pytest
from django.utils import timezone

from survey import prolific
from survey.models import AuditEvent, ProlificBonus
from survey.prolific.bonuses import _bonus_csv, _paying
from tests.survey.prolific_helpers import (  # noqa: F401  (fixtures: participant, study)
    TransactionWatch,
    participant_fixture,
    study_fixture,
)
from tests.survey.prolific_replay import STUDY_ID, SUBMISSION, ReplayAdapter, client_for

pytestmark = pytest.mark.django_db


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


# --- the maximum and the claim -------------------------------------------------------------


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


@pytest.mark.django_db(transaction=True)  # no test-wide transaction around the calls
def test_bonus_calls_prolific_outside_any_database_transaction(participant):
    adapter = TransactionWatch("bonus_setup", "bonus_pay_unavailable", "bonus_pay")
    client = client_for(adapter)
    with pytest.raises(prolific.ProlificError, match="503"):
        prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)
    bonus = prolific.bonus_pay(participant=participant, amount_pence=150, actor="a", client=client)
    assert bonus.state == ProlificBonus.State.PAID
    assert adapter.in_transaction == [False, False, False]
