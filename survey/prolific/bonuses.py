"""Bonus payments, each paid at most once (see the package's doc)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from survey.dataprotection import submission_label
from survey.models import AuditEvent, Participant, ProlificBonus
from survey.prolific.audit import audit_write, study_id_of, submission_id_of
from survey.prolific.client import ProlificClient, ProlificError

# A bonus row's ``error`` while its pay call is out; another caller waits this long before it
# may pay again (longer than the client's retries can take).
PAYING = "pay call in progress since "
PAY_CLAIM_STALE = timedelta(minutes=15)


def bonus_amount_check(amount_pence: Any) -> None:
    """Refuse an amount that is not a whole, positive number of pence, or over the maximum."""
    if isinstance(amount_pence, bool) or not isinstance(amount_pence, int) or amount_pence < 1:
        raise ProlificError("A bonus is a whole, positive number of pence (or cents).")
    maximum = settings.FVR_MAX_BONUS_PENCE
    if amount_pence > maximum:
        raise ProlificError(
            f"Refused: a bonus of {amount_pence} pence/cents is over this server's maximum of "
            f"{maximum} ({Decimal(maximum) / 100:.2f} in the study's currency, "
            "FVR_MAX_BONUS_PENCE). Check the amount (it is in pence: 150 pays 1.50); a larger "
            "bonus needs the setting raised."
        )


def _paying(now: datetime) -> str:
    return f"{PAYING}{now.isoformat()}"


def _paying_since(bonus: ProlificBonus) -> datetime | None:
    """When a pay call for this row went out, if one is still on record as outstanding."""
    if bonus.state != ProlificBonus.State.SETUP or not bonus.error.startswith(PAYING):
        return None
    try:
        return datetime.fromisoformat(bonus.error.removeprefix(PAYING))
    except ValueError:
        return None


def _bonus_claim(
    *, participant: Participant, amount_pence: int, reason: str
) -> tuple[ProlificBonus, str]:
    """Claim the bonus row for this submission in a short transaction: ``(row, next step)``.

    The step is ``"setup"`` (a new row, or one whose set-up Prolific refused) or ``"pay"`` (set
    up, not yet paid). The claim is committed before any Prolific call, so a second caller sees
    it and is refused instead of waiting on a lock while Prolific answers.
    """
    study = participant.study
    submission_id = submission_id_of(participant)
    try:
        with transaction.atomic():
            bonus, created = ProlificBonus.objects.get_or_create(
                study=study,
                submission_id=submission_id,
                defaults={
                    "participant": participant,
                    "amount_pence": amount_pence,
                    "reason": reason,
                },
            )
    except IntegrityError:  # another request claimed it between our read and insert
        bonus, created = ProlificBonus.objects.get(study=study, submission_id=submission_id), False
    now = timezone.now()
    with transaction.atomic():
        bonus = ProlificBonus.objects.select_for_update().get(pk=bonus.pk)
        _bonus_check(bonus, created=created, amount_pence=amount_pence, now=now)
        if not bonus.prolific_bonus_id:
            # New, or refused outright at set-up (state failed): this caller sets it up. A row in
            # setup without Prolific's bonus ID is what refuses every other caller meanwhile.
            bonus.state, bonus.error = ProlificBonus.State.SETUP, ""
            bonus.save(update_fields=["state", "error"])
            return bonus, "setup"
        bonus.error = _paying(now)
        bonus.save(update_fields=["error"])
        return bonus, "pay"


def _bonus_record(
    bonus: ProlificBonus,
    *,
    actor: str,
    participant: Participant,
    step: str,
    answer: Any,
    **changes: Any,
) -> None:
    """Save what Prolific answered on the row, with its audit event, in one short transaction."""
    for name, value in changes.items():
        setattr(bonus, name, value)
    with transaction.atomic():
        bonus.save(update_fields=list(changes))
        _bonus_audit(actor, bonus, participant, step, answer)


def bonus_pay(
    *,
    participant: Participant,
    amount_pence: int,
    reason: str = "",
    actor: str,
    client: ProlificClient | None = None,
) -> ProlificBonus:
    """Pay one bonus for the participant's submission, at most once (see the module doc)."""
    bonus_amount_check(amount_pence)
    client = client or ProlificClient()
    study_id = study_id_of(participant.study)
    bonus, step = _bonus_claim(participant=participant, amount_pence=amount_pence, reason=reason)
    record = {"actor": actor, "participant": participant}
    # From here on, Prolific is called outside any transaction; each answer is recorded on the
    # row in a short one, and failures are raised after they are kept.
    if step == "setup":
        _bonus_setup(
            bonus, client=client, study_id=study_id, amount_pence=amount_pence, record=record
        )
    try:
        paid = client.bonus_pay(bonus.prolific_bonus_id)
    except ProlificError as exc:
        _bonus_record(bonus, **record, step="pay failed", answer=exc.message, error=exc.message)
        raise
    _bonus_record(
        bonus,
        **record,
        step="paid",
        answer=paid,
        state=ProlificBonus.State.PAID,
        paid_at=timezone.now(),
        error="",
    )
    return bonus


def _bonus_setup(
    bonus: ProlificBonus,
    *,
    client: ProlificClient,
    study_id: str,
    amount_pence: int,
    record: dict[str, Any],
) -> None:
    """Set the claimed bonus up on Prolific and keep its bonus ID, claimed for paying; a
    failure is kept on the row, then raised."""
    try:
        setup = client.bonus_setup(
            study_id=study_id, csv_bonuses=_bonus_csv(bonus.submission_id, amount_pence)
        )
    except ProlificError as exc:
        # A definite refusal (4xx) created nothing at Prolific; anything else may have.
        refused = exc.status is not None and 400 <= exc.status < 500
        state = ProlificBonus.State.FAILED if refused else ProlificBonus.State.SETUP
        _bonus_record(
            bonus,
            **record,
            step="setup failed",
            answer=exc.message,
            state=state,
            error=exc.message,
        )
        raise
    bonus_id = str(setup.get("id") or "") if isinstance(setup, dict) else ""
    if not bonus_id:
        message = "Prolific's set-up answer named no bonus ID: check the study's bonuses there."
        _bonus_record(bonus, **record, step="setup failed", answer=setup, error=message)
        raise ProlificError(message)
    # Claimed for paying in the same write, so no other caller pays it meanwhile.
    _bonus_record(
        bonus,
        **record,
        step="set up",
        answer=setup,
        prolific_bonus_id=bonus_id,
        error=_paying(timezone.now()),
    )


def _bonus_check(bonus: ProlificBonus, *, created: bool, amount_pence: int, now: datetime) -> None:
    """Refuse a second payment, a changed amount, a set-up whose outcome is unknown, and a pay
    call another caller has out."""
    submission = submission_label(bonus.submission_id)
    if bonus.state == ProlificBonus.State.PAID:
        raise ProlificError(
            f"Refused: a bonus of {bonus.amount_pence} for {submission} was already paid on "
            f"{bonus.paid_at:%Y-%m-%d %H:%M} UTC; a submission gets at most one bonus here."
        )
    if not created and bonus.amount_pence != amount_pence:
        raise ProlificError(
            f"Refused: a bonus of {bonus.amount_pence} for {submission} is already on record "
            f"({bonus.get_state_display()}); it cannot be changed to {amount_pence}."
        )
    if bonus.state == ProlificBonus.State.SETUP and not bonus.prolific_bonus_id and not created:
        raise ProlificError(
            f"Refused: the bonus for {submission} is being set up, or was and its outcome is "
            f"unknown ({bonus.error or 'no answer recorded'}). Check the study's bonuses on "
            "Prolific and resolve it there; it is never set up twice."
        )
    since = _paying_since(bonus)
    if since is not None and now - since < PAY_CLAIM_STALE:
        raise ProlificError(
            f"Refused: the bonus for {submission} is being paid (the pay call went out at "
            f"{since:%Y-%m-%d %H:%M:%S} UTC). Wait for it; if it was interrupted, check the "
            f"study's bonuses on Prolific, and paying can be tried again "
            f"{int(PAY_CLAIM_STALE.total_seconds() // 60)} minutes after that time."
        )


def _bonus_csv(submission_id: str, amount_pence: int) -> str:
    """Prolific's ``csv_bonuses`` line: ``<submission id>,<amount>`` and a newline.

    The amount is a decimal in the study's currency (1.50 is £1.50/$1.50, and 30 would pay
    £30.00), so pence are converted here. Keyed by submission, so a purged Prolific ID does not
    matter (api-reference/bonuses/create-bonus-payments accepts either ID).
    """
    amount = (Decimal(amount_pence) / 100).quantize(Decimal("0.01"))
    return f"{submission_id},{amount}\n"


def _bonus_audit(
    actor: str, bonus: ProlificBonus, participant: Participant, step: str, answer: Any
) -> None:
    audit_write(
        actor=actor,
        action=AuditEvent.Action.PROLIFIC_BONUS,
        study=bonus.study,
        participant=participant,
        submission_id=bonus.submission_id,
        detail={
            "amount_pence": bonus.amount_pence,
            "step": step,
            "prolific_bonus_id": bonus.prolific_bonus_id,
            "answer": answer if isinstance(answer, str | dict | list) else None,
        },
    )
