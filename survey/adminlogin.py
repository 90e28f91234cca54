"""Admin login with failed attempts limited per account and per network, counted in the database.

The counters are survey.ratelimit's fixed windows (`RateCounter` rows that every gunicorn worker
shares), keyed by keyed hashes of the username and of the client's network: neither is stored.
Each attempt takes a slot in both counters before the password is checked, in one atomic
statement each, so parallel guesses cannot slip past the limit; a successful login gives its
slots back, so only failures count. Once a counter is over its limit, attempts are refused
without checking the password until its window ends.
"""

import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import F
from django.http import HttpRequest

from survey.models import RateCounter
from survey.ratelimit import Rate, client_ip, client_key, rate_hit, rate_parse

USER_SCOPE = "login-user"
NETWORK_SCOPE = "login-ip"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slot:
    """One attempt counted in one window of one counter."""

    scope: str
    client: str
    window_start: int


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed logins; retry in {retry_after} s.")
        self.retry_after = retry_after


def _rate(name: str) -> Rate | None:
    text = getattr(settings, name)
    try:
        return rate_parse(text)
    except ImproperlyConfigured as error:
        raise ImproperlyConfigured(
            f"{name}={text!r} is not a rate: write attempts/period such as '5/15m' "
            "(units s, m, h, d), or 'off' for no limit."
        ) from error


def username_key(username: str) -> str:
    """A keyed hash of the username (case-folded: 'Alice' and 'alice' share a counter)."""
    key = settings.FVR_PSEUDONYM_KEY.encode()
    message = f"admin-login-user:{username.casefold()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def login_attempt_begin(
    *, request: HttpRequest, username: str, now: float | None = None
) -> list[Slot]:
    """Count a login attempt; raise LoginThrottled when its account or network is over limit."""
    now = time.time() if now is None else now
    counters = [
        (USER_SCOPE, username_key(username), _rate("FVR_ADMIN_LOGIN_RATE")),
        (NETWORK_SCOPE, client_key(client_ip(request)), _rate("FVR_ADMIN_LOGIN_NETWORK_RATE")),
    ]
    slots, waits = [], []
    for scope, client, rate in counters:
        if rate is None:
            continue
        hits, window_end = rate_hit(scope=scope, client=client, rate=rate, now=now)
        slots.append(Slot(scope=scope, client=client, window_start=window_end - rate.seconds))
        if hits > rate.limit:
            waits.append(max(1, math.ceil(window_end - now)))
            if hits == rate.limit + 1:  # one log line per counter and window, not per attempt
                logger.warning(
                    "Admin login limit (%s) reached for %s %s…; refused until the window ends.",
                    rate,
                    scope,
                    client[:12],
                )
    if waits:
        raise LoginThrottled(retry_after=max(waits))
    return slots


def login_attempt_succeeded(*, slots: list[Slot]) -> None:
    """Give back a successful attempt's slots: only failures count towards the limits."""
    for slot in slots:
        RateCounter.objects.filter(
            scope=slot.scope, client=slot.client, window_start=slot.window_start, hits__gt=0
        ).update(hits=F("hits") - 1)


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing attempts over the limits before checking the password."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": (
            "Too many failed logins for this account or from your network. Wait %(minutes)s "
            "minute(s), then try again."
        ),
    }

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()
        try:
            slots = login_attempt_begin(request=self.request, username=username)
        except LoginThrottled as refused:
            raise ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": math.ceil(refused.retry_after / 60)},
            ) from refused
        cleaned = super().clean()  # a ValidationError here leaves the attempt counted
        login_attempt_succeeded(slots=slots)
        return cleaned
