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

The client is in `client`, the operations in `verification`, `submissions` and `bonuses` (with
what they share in `audit`); all are importable from here.
"""

from survey.prolific.bonuses import PAY_CLAIM_STALE, PAYING, bonus_amount_check, bonus_pay
from survey.prolific.client import (
    DEFAULT_API_URL,
    MAX_RETRIES,
    RETRY_STATUSES,
    ProlificClient,
    ProlificError,
)
from survey.prolific.submissions import (
    BULK_APPROVE_MAX,
    FAILED_CHECK_MESSAGE,
    MIN_REJECTION_MESSAGE,
    NO_CONSENT_RETURN_REASONS,
    REJECTION_CATEGORIES,
    SUBMISSION_STATUSES,
    Approval,
    rejection_validate,
    submission_reject,
    submission_request_return,
    submissions_approve,
    submissions_list,
)
from survey.prolific.verification import PURGED, Verification, submission_verify, submissions_verify

__all__ = [
    "BULK_APPROVE_MAX",
    "DEFAULT_API_URL",
    "FAILED_CHECK_MESSAGE",
    "MAX_RETRIES",
    "MIN_REJECTION_MESSAGE",
    "NO_CONSENT_RETURN_REASONS",
    "PAYING",
    "PAY_CLAIM_STALE",
    "PURGED",
    "REJECTION_CATEGORIES",
    "RETRY_STATUSES",
    "SUBMISSION_STATUSES",
    "Approval",
    "ProlificClient",
    "ProlificError",
    "Verification",
    "bonus_amount_check",
    "bonus_pay",
    "rejection_validate",
    "submission_reject",
    "submission_request_return",
    "submission_verify",
    "submissions_approve",
    "submissions_list",
    "submissions_verify",
]
