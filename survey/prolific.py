"""Prolific operations over Prolific's REST API, each one written to the audit log.

The client (`ProlificClient`) speaks to ``https://api.prolific.com/api/v1/`` (or
``FVR_PROLIFIC_API_URL``) with ``Authorization: Token <FVR_PROLIFIC_TOKEN>``; the token comes
from the environment at call time and is never stored in the database. 429 answers are
retried with an exponential back-off (after ``Retry-After`` when Prolific sends one), as
https://docs.prolific.com/documentation/core-concepts/managing-high-loads asks; 401, 404 and
400 raise `ProlificError` with a message that says what to do and Prolific's own error detail.
Endpoints, bodies and response fields follow https://docs.prolific.com/api-reference/ (the
pages are cited where each call is made; docs/pilot.md lists them).

The operations (`submission_verify`, `submissions_verify`, `submissions_list`,
`submissions_approve`, `submission_reject`, `bonus_pay`, `submission_request_return`) take the
acting staff user's name or ``command:<name>`` and write one `AuditEvent` per participant: the
pseudonym, and the submission ID only as its keyed hash (``submission_hash``). A participant's
submission ID is the ``SESSION_ID`` Prolific put in their study link.

Verification stores ``Participant.session_verified_at`` once Prolific confirms that the
SESSION_ID is a submission of this participant to this study; approval verifies whoever is not
yet verified and leaves out those who fail, and participants with integrity flags.

No Prolific call runs inside a database transaction (a transaction held open across the
network would keep row locks for as long as Prolific takes). Bonuses: Prolific's set-up call
is not idempotent, so `bonus_pay` claims the `ProlificBonus` row (unique per study and
submission) in a short transaction before calling the API, and records each answer in another:
a paid bonus is never paid again, a row left in ``setup`` after a failed pay call is resumed by
paying the bonus already set up, never by setting up a second one, and a bonus over
``FVR_MAX_BONUS_PENCE`` is refused before anything is called.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from survey.dataprotection import (
    audit_record,
    identifiers_scrubbed,
    submission_hash,
    submission_label,
)
from survey.models import AuditEvent, Participant, ProlificBonus, Study

DEFAULT_API_URL = "https://api.prolific.com/api/v1/"
# The ``rejection_category`` enum of
# https://docs.prolific.com/api-reference/submissions/transition-submission (values as in
# Prolific's own CLI, github.com/prolific-oss/cli).
REJECTION_CATEGORIES: tuple[str, ...] = (
    "TOO_QUICKLY",
    "TOO_SLOWLY",
    "FAILED_INSTRUCTIONS",
    "INCOMP_LONGITUDINAL",
    "FAILED_CHECK",
    "LOW_EFFORT",
    "MALINGERING",
    "NO_CODE",
    "BAD_CODE",
    "NO_DATA",
    "UNSUPP_DEVICE",
    "OTHER",
)
MIN_REJECTION_MESSAGE = 100  # Prolific refuses shorter rejection messages
# A submission's statuses (https://docs.prolific.com/api-reference/submissions/submission-object,
# plus PARTIALLY APPROVED from the transition page). Spelled with spaces, as Prolific returns them.
SUBMISSION_STATUSES: tuple[str, ...] = (
    "RESERVED",
    "ACTIVE",
    "TIMED-OUT",
    "AWAITING REVIEW",
    "APPROVED",
    "PARTIALLY APPROVED",
    "RETURNED",
    "REJECTED",
    "SCREENED OUT",
)
# Prolific recommends at most this many IDs per bulk-approve call, sent one batch after another.
BULK_APPROVE_MAX = 1000
FAILED_CHECK_MESSAGE = (
    "Your submission is rejected because you failed two of the instructed-response attention "
    "checks in this study (each asked you to select one named photo and one named confidence "
    "rating). This follows Prolific's attention check policy."
)
# Prolific writes the message around the reasons, so a reason is a short phrase, not a letter.
NO_CONSENT_RETURN_REASONS = ["Did not give consent to take part in the study"]
RETRY_STATUSES = {429}
MAX_RETRIES = 4
# A bonus row's ``error`` while its pay call is out; another caller waits this long before it
# may pay again (longer than the client's retries can take).
PAYING = "pay call in progress since "
PAY_CLAIM_STALE = timedelta(minutes=15)
PURGED = "the Prolific ID was purged here, so it cannot be compared"


class ProlificError(Exception):
    """A Prolific operation failed or was refused; the message says why and what to do."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail


def _detail(response: requests.Response) -> str:
    """Prolific's error detail (``{"error": {"detail": …}}``), or the body's text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        detail = error.get("detail") or error.get("title") or error
        if isinstance(detail, dict):
            return "; ".join(f"{k}: {_flat(v)}" for k, v in detail.items())
        return _flat(detail)
    return _flat(error)


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_flat(v) for v in value)
    return str(value)


class ProlificClient:
    """A thin client of Prolific's REST API (requests), with retries on 429."""

    # How a client without a given session makes one (tests mount recorded responses here).
    session_factory: Callable[[], requests.Session] = requests.Session

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self.token = token if token is not None else settings.FVR_PROLIFIC_TOKEN
        self.base_url = (base_url or settings.FVR_PROLIFIC_API_URL or DEFAULT_API_URL).rstrip(
            "/"
        ) + "/"
        self.session = session or type(self).session_factory()
        self.sleep = sleep
        self.timeout = timeout

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict | None = None
    ) -> Any:
        """One API call; returns the decoded JSON body (None when empty)."""
        if not self.token:
            raise ProlificError(
                "FVR_PROLIFIC_TOKEN is missing or invalid: set it in the environment to an "
                "API token from Prolific (Workspace settings → API tokens)."
            )
        url = path if path.startswith("http") else urljoin(self.base_url, path.lstrip("/"))
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise ProlificError(
                    f"Could not reach Prolific ({method} {url}): {exc}. Check the network and "
                    "try again."
                ) from exc
            if response.status_code in RETRY_STATUSES and attempt < MAX_RETRIES:
                self.sleep(_retry_after(response, attempt))
                continue
            return self._result(response, method, url)
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _result(response: requests.Response, method: str, url: str) -> Any:
        status = response.status_code
        if status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return {"text": response.text}
        detail = _detail(response)
        if status == 401:
            raise ProlificError(
                "FVR_PROLIFIC_TOKEN is missing or invalid: Prolific answered 401 Unauthorized "
                f"({detail}). Set FVR_PROLIFIC_TOKEN to a current API token from Prolific.",
                status=status,
                detail=detail,
            )
        if status == 403:
            raise ProlificError(
                f"Prolific refused {method} {url} (403 Forbidden: {detail}). The token's "
                "workspace may not own this study.",
                status=status,
                detail=detail,
            )
        if status == 404:
            raise ProlificError(
                f"Prolific has no such object: {method} {url} answered 404 ({detail}). Check "
                "the study's Prolific STUDY_ID and the participant's SESSION_ID.",
                status=status,
                detail=detail,
            )
        if status == 429:
            raise ProlificError(
                f"Prolific is rate limiting this token (429 after {MAX_RETRIES} retries). "
                "Wait a minute and try again.",
                status=status,
                detail=detail,
            )
        if 400 <= status < 500:
            raise ProlificError(
                f"Prolific refused {method} {url} ({status}): {detail}",
                status=status,
                detail=detail,
            )
        raise ProlificError(
            f"Prolific failed on {method} {url} ({status}): {detail}. Try again later.",
            status=status,
            detail=detail,
        )

    # Endpoints ------------------------------------------------------------------------------

    def submission(self, submission_id: str) -> dict:
        """GET submissions/{id}/ (api-reference/submissions/get-submission)."""
        return self.request("GET", f"submissions/{submission_id}/")

    def study_submissions(self, study_id: str) -> list[dict]:
        """GET studies/{id}/submissions/ (api-reference/studies/get-study-submissions).

        The documented answer is ``{"results": [...]}`` with every submission of the study; a
        ``_links.next.href`` is followed if Prolific ever sends one, so no page is dropped.
        """
        results: list[dict] = []
        url: str | None = f"studies/{study_id}/submissions/"
        for _ in range(10_000):
            if not url:
                return results
            page = self.request("GET", url)
            results += page.get("results", [])
            url = _next_link(page)
        raise ProlificError("Prolific's submission list did not end after 10,000 pages.")

    def bulk_approve(
        self,
        *,
        submission_ids: list[str] | None = None,
        study_id: str | None = None,
        participant_ids: list[str] | None = None,
    ) -> Any:
        """POST submissions/bulk-approve/ (api-reference/submissions/bulk-approve-submissions).

        Two documented bodies: ``{"submission_ids"}`` (Prolific's recommendation), or
        ``{"study_id", "participant_ids"}``.
        """
        if submission_ids and not (study_id or participant_ids):
            body: dict[str, Any] = {"submission_ids": submission_ids}
        elif study_id and participant_ids and not submission_ids:
            body = {"study_id": study_id, "participant_ids": participant_ids}
        else:
            raise ProlificError(
                "Bulk approval takes either submission IDs, or a study ID and participant IDs."
            )
        return self.request("POST", "submissions/bulk-approve/", json=body)

    def transition(self, submission_id: str, body: dict[str, Any]) -> Any:
        """POST submissions/{id}/transition/ (api-reference/submissions/transition-submission)."""
        return self.request("POST", f"submissions/{submission_id}/transition/", json=body)

    def bonus_setup(self, *, study_id: str, csv_bonuses: str) -> dict:
        """POST submissions/bonus-payments/ (api-reference/bonuses/create-bonus-payments)."""
        return self.request(
            "POST",
            "submissions/bonus-payments/",
            json={"study_id": study_id, "csv_bonuses": csv_bonuses},
        )

    def bonus_pay(self, bonus_id: str) -> Any:
        """POST bulk-bonus-payments/{id}/pay/ (api-reference/bonuses/pay-bonus-payments)."""
        return self.request("POST", f"bulk-bonus-payments/{bonus_id}/pay/")

    def request_return(self, submission_id: str, reasons: list[str]) -> Any:
        """POST submissions/{id}/request-return/ (…/submissions/request-submission-return)."""
        return self.request(
            "POST",
            f"submissions/{submission_id}/request-return/",
            json={"request_return_reasons": reasons},
        )


def _retry_after(response: requests.Response, attempt: int) -> float:
    """Seconds to wait: Retry-After when given (seconds), else 1, 2, 4, 8 s."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return float(2**attempt)


def _next_link(page: dict) -> str | None:
    """The ``_links.next.href`` of a list page, if any (not in the documented list answer)."""
    nxt = (page.get("_links") or {}).get("next")
    return (nxt.get("href") or None) if isinstance(nxt, dict) else None


# --- operations (audited) -------------------------------------------------------------------


def _audit(
    *,
    actor: str,
    action: str,
    study: Study,
    participant: Participant | None,
    detail: dict,
    submission_id: str = "",
) -> AuditEvent:
    """One audit event: the pseudonym, and the submission only as its keyed hash.

    Any raw submission or Prolific ID in the detail (Prolific's answers and error messages quote
    them) is replaced, so the log never holds one.
    """
    secrets = {submission_id, participant.session_id if participant else ""} - {""}
    replacements = {sid: submission_label(sid) for sid in secrets}
    if participant and participant.prolific_pid:
        replacements[participant.prolific_pid] = "[Prolific ID removed]"
    detail = identifiers_scrubbed(detail, replacements)
    if submission_id:
        detail = {"submission_hash": submission_hash(submission_id), **detail}
    return audit_record(
        actor=actor,
        action=action,
        study=study,
        subject=participant.pseudonym if participant else "",
        detail=detail,
    )


def _prolific_study_id(study: Study) -> str:
    if not study.prolific_study_id:
        raise ProlificError(
            f"Study {study.slug!r} has no Prolific STUDY_ID: set it in the admin (Study → "
            "Prolific STUDY_ID) to the ID of the study on Prolific."
        )
    return study.prolific_study_id


def _submission_id(participant: Participant) -> str:
    if not participant.session_id:
        raise ProlificError(f"Participant {participant.pseudonym} has no SESSION_ID.")
    return participant.session_id


@dataclass
class Verification:
    """Whether a participant's SESSION_ID is their submission of this study on Prolific."""

    participant: Participant
    submission_id: str
    ok: bool
    status: str = ""
    problems: list[str] = field(default_factory=list)


def _identity_problems(
    participant: Participant, *, prolific_participant: Any, prolific_study: Any, study_id: str
) -> list[str]:
    """What contradicts the arrival in Prolific's record of its submission (nothing: verified)."""
    problems = []
    if not participant.prolific_pid:
        problems.append(PURGED)
    elif prolific_participant != participant.prolific_pid:
        problems.append("the submission belongs to another Prolific participant")
    if prolific_study != study_id:
        problems.append(f"the submission is for Prolific study {prolific_study}, not {study_id}")
    return problems


def _verification_record(result: Verification, *, actor: str, answered: bool) -> Verification:
    """Store the outcome on the participant (outside any Prolific call) and audit it.

    A confirmation sets ``session_verified_at`` (kept from the first one); Prolific's answer
    contradicting the arrival clears it. Where nothing could be compared (`answered` false, or
    the Prolific ID purged here), what was stored stays.
    """
    participant = result.participant
    now = timezone.now()
    with transaction.atomic():
        rows = Participant.objects.filter(pk=participant.pk)
        if result.ok:
            rows.filter(session_verified_at__isnull=True).update(session_verified_at=now)
        elif answered and PURGED not in result.problems:
            rows.update(session_verified_at=None)
        participant.session_verified_at = rows.values_list("session_verified_at", flat=True).first()
        _audit(
            actor=actor,
            action=AuditEvent.Action.PROLIFIC_VERIFY,
            study=participant.study,
            participant=participant,
            submission_id=result.submission_id,
            detail={"ok": result.ok, "status": result.status, "problems": result.problems},
        )
    return result


def submission_verify(
    *, participant: Participant, actor: str, client: ProlificClient | None = None
) -> Verification:
    """Check the submission behind the arrival's SESSION_ID (same participant, same study) and
    store ``session_verified_at`` when Prolific confirms it."""
    client = client or ProlificClient()
    study = participant.study
    study_id = _prolific_study_id(study)
    submission_id = _submission_id(participant)
    try:
        submission = client.submission(submission_id)
    except ProlificError as exc:
        if exc.status != 404:
            raise
        result = Verification(participant, submission_id, False, problems=[exc.message])
    else:
        problems = _identity_problems(
            participant,
            prolific_participant=submission.get("participant"),  # documented (not participant_id)
            prolific_study=submission.get("study_id"),
            study_id=study_id,
        )
        result = Verification(
            participant, submission_id, not problems, submission.get("status", ""), problems
        )
    return _verification_record(result, actor=actor, answered=True)


def submissions_verify(
    *,
    study: Study,
    actor: str,
    participants: Iterable[Participant] | None = None,
    client: ProlificClient | None = None,
) -> list[Verification]:
    """Verify many participants of a study with one read of its submission list.

    Default: every finished participant not yet verified. The study's list holds only its own
    submissions, so a SESSION_ID found there with the participant's Prolific ID is verified;
    one missing from it, or another participant's, is not.
    """
    client = client or ProlificClient()
    study_id = _prolific_study_id(study)
    if participants is None:
        participants = (
            Participant.objects.filter(study=study, session_verified_at__isnull=True)
            .exclude(status=Participant.Status.ACTIVE)
            .select_related("study")
            .order_by("pk")
        )
    chosen = list(participants)
    if not chosen:
        return []
    submissions = {str(row.get("id", "")): row for row in client.study_submissions(study_id)}
    results = []
    for p in chosen:
        row = submissions.get(p.session_id) if p.session_id else None
        answered = False
        if p.study_id != study.pk:
            problems = [f"the participant took part in another study, not {study.slug!r}"]
        elif not p.session_id:
            problems = ["no SESSION_ID is stored here (purged?)"]
        elif row is None:
            answered = True
            problems = [f"Prolific lists no submission with this SESSION_ID in study {study_id}"]
        else:
            answered = True
            problems = _identity_problems(
                p,
                prolific_participant=row.get("participant_id"),  # the list's field
                prolific_study=study_id,
                study_id=study_id,
            )
        status = str(row.get("status", "")) if row else ""
        result = Verification(p, p.session_id, not problems, status, problems)
        results.append(_verification_record(result, actor=actor, answered=answered))
    return results


def _status_name(status: str) -> str:
    """A submission status as Prolific returns it (``awaiting_review`` → ``AWAITING REVIEW``)."""
    name = " ".join(status.replace("_", " ").upper().split())
    return "TIMED-OUT" if name in {"TIMED OUT", "TIMEDOUT"} else name


def submissions_list(
    *, study: Study, status: str | None = None, client: ProlificClient | None = None
) -> list[dict]:
    """The study's submissions on Prolific, optionally only those with this status."""
    wanted = _status_name(status) if status else None
    if wanted and wanted not in SUBMISSION_STATUSES:
        raise ProlificError(
            f"Unknown submission status {status!r}: use one of Prolific's "
            + ", ".join(SUBMISSION_STATUSES)
            + " (underscores for spaces are fine)."
        )
    client = client or ProlificClient()
    rows = client.study_submissions(_prolific_study_id(study))
    # The study's list endpoint has no status filter, so it is applied here.
    if wanted:
        rows = [r for r in rows if _status_name(str(r.get("status", ""))) == wanted]
    return rows


@dataclass
class Approval:
    """What an approval sent to Prolific, and who was left out and why (pseudonym → reason)."""

    approved: list[Participant]
    left_out: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        """The number of submissions Prolific was asked to approve."""
        return len(self.approved)

    def summary(self) -> str:
        """One line for the operator: how many were approved, who was left out and why."""
        text = f"Asked Prolific to approve {len(self.approved)} submission(s)."
        if self.left_out:
            reasons = "; ".join(f"{who}: {why}" for who, why in self.left_out.items())
            text += f" Left out {len(self.left_out)}: {reasons}."
        return text


def submissions_approve(
    *,
    study: Study,
    participants: Iterable[Participant],
    actor: str,
    client: ProlificClient | None = None,
) -> Approval:
    """Approve these participants' submissions in bulk calls (completed ones only).

    Participants with integrity flags are left out; those not yet verified are verified first
    (one read of the study's submissions) and left out if Prolific does not confirm them. The
    result names everyone left out, with the reason.
    """
    client = client or ProlificClient()
    _prolific_study_id(study)  # refuse a study not linked to Prolific, though the body omits it
    chosen = list(participants)
    not_completed = [p.pseudonym for p in chosen if p.status != Participant.Status.COMPLETED]
    if not_completed:
        raise ProlificError(
            "Only completed participations are approved; not completed: " + ", ".join(not_completed)
        )
    if not chosen:
        raise ProlificError("No participants to approve.")
    left_out = {
        p.pseudonym: "integrity flags (" + "; ".join(map(str, p.integrity_flags)) + ")"
        for p in chosen
        if p.integrity_flags
    }
    unverified = [
        p for p in chosen if p.pseudonym not in left_out and p.session_verified_at is None
    ]
    for result in submissions_verify(
        study=study, participants=unverified, actor=actor, client=client
    ):
        if not result.ok:
            left_out[result.participant.pseudonym] = "not verified: " + "; ".join(result.problems)
    chosen = [p for p in chosen if p.pseudonym not in left_out]
    submission_ids = [_submission_id(p) for p in chosen]
    approved: list[Participant] = []
    # Sequential batches of at most BULK_APPROVE_MAX, as Prolific recommends; each batch is
    # audited once Prolific has accepted it, so a failure leaves the earlier batches on record.
    for start in range(0, len(chosen), BULK_APPROVE_MAX):
        batch = chosen[start : start + BULK_APPROVE_MAX]
        ids = submission_ids[start : start + BULK_APPROVE_MAX]
        client.bulk_approve(submission_ids=ids)
        for p, submission_id in zip(batch, ids, strict=True):
            _audit(
                actor=actor,
                action=AuditEvent.Action.PROLIFIC_APPROVE,
                study=study,
                participant=p,
                submission_id=submission_id,
                detail={"bulk": len(ids)},
            )
        approved += batch
    return Approval(approved=approved, left_out=left_out)


def rejection_validate(*, category: str, message: str) -> None:
    """Refuse a rejection Prolific would refuse, before any call."""
    if category not in REJECTION_CATEGORIES:
        raise ProlificError(
            f"Rejection category {category!r} is not one of Prolific's: "
            + ", ".join(REJECTION_CATEGORIES)
            + "."
        )
    if len(message.strip()) < MIN_REJECTION_MESSAGE:
        raise ProlificError(
            f"A rejection message must have at least {MIN_REJECTION_MESSAGE} characters (this "
            f"one has {len(message.strip())}): explain to the participant why, as Prolific "
            "requires."
        )


def submission_reject(
    *,
    participant: Participant,
    category: str,
    message: str,
    actor: str,
    client: ProlificClient | None = None,
) -> Any:
    """Reject one submission with an allowed category and a message of 100+ characters."""
    rejection_validate(category=category, message=message)
    client = client or ProlificClient()
    submission_id = _submission_id(participant)
    result = client.transition(
        submission_id,
        {"action": "REJECT", "message": message.strip(), "rejection_category": category},
    )
    _audit(
        actor=actor,
        action=AuditEvent.Action.PROLIFIC_REJECT,
        study=participant.study,
        participant=participant,
        submission_id=submission_id,
        detail={"category": category, "message": message},
    )
    return result


def submission_request_return(
    *,
    participant: Participant,
    reasons: list[str] | None = None,
    actor: str,
    client: ProlificClient | None = None,
) -> Any:
    """Ask a participant to return their submission (e.g. after declining consent)."""
    reasons = [r.strip() for r in (reasons or NO_CONSENT_RETURN_REASONS) if r.strip()]
    if not reasons:
        raise ProlificError("Give at least one reason for the return request.")
    client = client or ProlificClient()
    submission_id = _submission_id(participant)
    result = client.request_return(submission_id, reasons)
    _audit(
        actor=actor,
        action=AuditEvent.Action.PROLIFIC_RETURN,
        study=participant.study,
        participant=participant,
        submission_id=submission_id,
        detail={"reasons": reasons},
    )
    return result


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
    submission_id = _submission_id(participant)
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
    study_id = _prolific_study_id(participant.study)
    bonus, step = _bonus_claim(participant=participant, amount_pence=amount_pence, reason=reason)
    record = {"actor": actor, "participant": participant}
    # From here on, Prolific is called outside any transaction; each answer is recorded on the
    # row in a short one, and failures are raised after they are kept.
    if step == "setup":
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
    _audit(
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
