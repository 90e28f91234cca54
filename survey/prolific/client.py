"""The client of Prolific's REST API: requests with retries on 429, errors that say what to do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from requests import RequestException, Response, Session

DEFAULT_API_URL = "https://api.prolific.com/api/v1/"
RETRY_STATUSES = {429}
MAX_RETRIES = 4


class ProlificError(Exception):
    """A Prolific operation failed or was refused; the message says why and what to do."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail


def _detail(response: Response) -> str:
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

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        session: Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self.token = token if token is not None else settings.FVR_PROLIFIC_TOKEN
        self.base_url = (base_url or settings.FVR_PROLIFIC_API_URL or DEFAULT_API_URL).rstrip(
            "/"
        ) + "/"
        # A client without a given session makes its own.
        self.session = session or Session()
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
            except RequestException as exc:
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
    def _result(response: Response, method: str, url: str) -> Any:
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


def _retry_after(response: Response, attempt: int) -> float:
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
