"""Rate limit on the entry page per client IP, counted in the database.

Every gunicorn worker (and every instance behind the proxy) counts in the same `RateCounter`
rows, so the limit holds however many processes serve the study. One atomic statement per
request (INSERT … ON CONFLICT DO UPDATE … RETURNING, on PostgreSQL and SQLite ≥ 3.35) adds the
hit and reads the new count; fixed windows keep it to one row per client and window.
"""

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpRequest

from survey.models import RateCounter, Study
from survey.services import FlowError, refusal_log

logger = logging.getLogger(__name__)

ENTRY_SCOPE = "entry"
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE_RE = re.compile(
    r"^\s*(?P<limit>\d+)\s*/\s*(?P<count>\d*)\s*"
    r"(?P<unit>s|sec|second|m|min|minute|h|hr|hour|d|day)s?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit} per {self.seconds} s"


@lru_cache(maxsize=8)
def rate_parse(text: str) -> Rate | None:
    """'30/min', '100/10m', '5/s' → Rate; 'off', empty or a zero limit → None (no limit)."""
    if text.strip().lower() in {"", "off", "none"}:
        return None
    match = RATE_RE.fullmatch(text)
    if match is None:
        raise ImproperlyConfigured(
            f"FVR_ENTRY_RATE={text!r} is not a rate: write requests/period such as '30/min', "
            "'100/10m' or '5/s' (units s, m, h, d), or 'off' for no limit."
        )
    limit = int(match["limit"])
    seconds = int(match["count"] or 1) * UNIT_SECONDS[match["unit"][0].lower()]
    if limit == 0:
        return None
    if seconds == 0:
        raise ImproperlyConfigured(f"FVR_ENTRY_RATE={text!r} has a period of 0 seconds.")
    return Rate(limit=limit, seconds=seconds)


class RateLimited(FlowError):
    status = 429
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as error:
        raise ImproperlyConfigured(
            f"FVR_TRUSTED_PROXIES must list IP addresses or networks: {error}"
        ) from error


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _untrusted_proxy_warn(remote: str) -> None:
    """Say, once per process for each proxy, that requests come through a proxy nobody
    declared."""
    address = _address(remote)
    # A proxy sits on this host or the local network; a public address may be a participant
    # who wrote the header themselves, and IP addresses are kept out of the logs.
    where = f" from {remote}" if address and (address.is_private or address.is_loopback) else ""
    _untrusted_proxy_report(where)


# Remembered per process: the first request through each proxy is reported, later ones are not
# (the proxies on a host's own and local networks are few; the bound keeps it so).
@lru_cache(maxsize=64)
def _untrusted_proxy_report(where: str) -> None:
    logger.warning(
        "Requests with X-Forwarded-For arrive%s, but FVR_TRUSTED_PROXIES is empty: the entry "
        "rate limit counts every client behind that proxy as one. Set FVR_TRUSTED_PROXIES to "
        "the proxy's address as the app sees it (127.0.0.1 for nginx on this host, as in "
        "deploy/fvr-study.env).",
        where,
    )


def client_ip(request: HttpRequest) -> str:
    """The client's IP: REMOTE_ADDR, or X-Forwarded-For when REMOTE_ADDR is a trusted proxy.

    X-Forwarded-For is read from the right, skipping trusted proxies: entries further left were
    written by the client and may be forged. With no trusted proxy configured, a request that
    carries the header logs a warning (once per process and proxy): a proxy is probably in front.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = _networks(tuple(settings.FVR_TRUSTED_PROXIES))
    if not trusted and "HTTP_X_FORWARDED_FOR" in request.META:
        _untrusted_proxy_warn(remote)

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in trusted)

    address = _address(remote)
    if address is None or not is_trusted(address):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for entry in reversed([part for part in forwarded.split(",") if part.strip()]):
        hop = _address(entry)
        if hop is None:
            break  # Unparsable: what follows (leftwards) is the client's own claim.
        if not is_trusted(hop):
            return str(hop)
        address = hop
    return str(address)


def client_key(ip: str) -> str:
    """A hash of the client's network keyed with FVR_PSEUDONYM_KEY (not SECRET_KEY, which may be
    rotated): the counters never hold an IP address.

    IPv6 clients are counted per /64, the block one subscriber usually gets (one address each
    would let a single client rotate through billions of them).
    """
    address = _address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        ip = str(ipaddress.ip_network(f"{address}/64", strict=False))
    elif isinstance(address, ipaddress.IPv6Address):
        ip = str(address.ipv4_mapped)
    key = settings.FVR_PSEUDONYM_KEY.encode()
    return hmac.new(key, f"client-ip:{ip}".encode(), hashlib.sha256).hexdigest()[:32]


def rate_hit(*, scope: str, client: str, rate: Rate, now: float) -> tuple[int, int]:
    """Count one request of `client` in the window holding `now` (a Unix time); return (hits
    so far, window end)."""
    window_start = int(now // rate.seconds) * rate.seconds
    table = connection.ops.quote_name(RateCounter._meta.db_table)
    # Only the model's own (quoted) table name is interpolated; every value is a parameter.
    upsert = (
        f"INSERT INTO {table} (scope, client, window_start, hits) VALUES (%s, %s, %s, 1) "  # nosec B608
        f"ON CONFLICT (scope, client, window_start) DO UPDATE SET hits = {table}.hits + 1 "
        "RETURNING hits"
    )
    with connection.cursor() as cursor:
        cursor.execute(upsert, [scope, client, window_start])
        (hits,) = cursor.fetchone()
    if hits == 1:
        # This client's first request in a new window: drop windows that can no longer count.
        RateCounter.objects.filter(scope=scope, window_start__lt=window_start).delete()
    return hits, window_start + rate.seconds


def entry_rate_check(*, request: HttpRequest, study: Study) -> None:
    """Count an entry request; raise RateLimited when its client is over FVR_ENTRY_RATE."""
    rate = rate_parse(settings.FVR_ENTRY_RATE)
    if rate is None:
        return
    now = time.time()
    client = client_key(client_ip(request))
    hits, window_end = rate_hit(scope=ENTRY_SCOPE, client=client, rate=rate, now=now)
    if hits <= rate.limit:
        return
    retry_after = max(1, math.ceil(window_end - now))
    error = RateLimited(
        "Too many attempts to open this study came from your network in a short time. "
        f"Please wait {retry_after} seconds, then open the study again from your Prolific "
        "link. If you had already started, your answers are kept.",
        retry_after=retry_after,
    )
    if hits == rate.limit + 1:
        # One row per client and window: a flood must not become a flood of log rows.
        refusal_log(
            error=RateLimited(
                f"Entry rate limit ({rate}) exceeded by client {client[:12]}; further requests "
                "in this window are refused without a new log row.",
                retry_after=retry_after,
            ),
            study=study,
        )
    raise error
