"""Which participant a browser is, per study: a signed cookie, not a server-side session.

The cookie maps study slug → participant row id (never a Prolific ID), signed with the
project's SECRET_KEY (``django.core.signing``: URL-safe base64 JSON, a timestamp and an HMAC;
no quotes, which some cookie jars mangle) and refused after SESSION_COOKIE_AGE, so a
browser cannot claim another participant and nothing is stored server-side for it: a
participant request reads no session row (one query fewer on every page and answer), and no
``django_session`` rows accumulate for participants. The admin keeps Django's database
sessions. Only the entry view, which has just checked the Prolific IDs, writes the cookie.

A refused entry leaves its reason in a second, short-lived signed cookie for the refusal page,
so that the page which explains it is not the URL that carries the IDs.
"""

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

from survey.models import Participant

COOKIE = "fvr_participant"
SALT = "survey.browser.participant"


def browser_participants(request: HttpRequest) -> dict[str, int]:
    """slug → participant id, as signed into this browser's cookie ({} when absent or forged)."""
    value = request.COOKIES.get(COOKIE)
    if not value:
        return {}
    try:
        known = signing.loads(value, salt=SALT, max_age=settings.SESSION_COOKIE_AGE)
    except (signing.BadSignature, ValueError):  # forged, expired, or not ours
        return {}
    if not isinstance(known, dict):
        return {}
    return {str(slug): pk for slug, pk in known.items() if isinstance(pk, int)}


def browser_participant(request: HttpRequest, slug: str) -> Participant | None:
    """The participant this browser is in the study ``slug``, with its study: one query."""
    participant_id = browser_participants(request).get(slug)
    if participant_id is None:
        return None
    return (
        Participant.objects.select_related("study")
        .filter(pk=participant_id, study__slug=slug)
        .first()
    )


def browser_remember(
    request: HttpRequest, response: HttpResponse, *, slug: str, participant_id: int
) -> None:
    """Sign ``participant_id`` into the browser's cookie for ``slug`` (other studies kept)."""
    known = browser_participants(request)
    if known.get(slug) == participant_id:
        return
    known[slug] = participant_id
    response.set_cookie(
        COOKIE,
        signing.dumps(known, salt=SALT),
        max_age=settings.SESSION_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


# A refused entry is shown at a URL without the Prolific IDs: the entry view redirects there
# and leaves the reason in this short-lived signed cookie (survey.views.refused).
REFUSAL_COOKIE = "fvr_refusal"
REFUSAL_SALT = "survey.browser.refusal"
REFUSAL_SECONDS = 600


def refusal_remember(response: HttpResponse, *, slug: str, status: int, message: str) -> None:
    """Carry a refusal's status and message to the refusal page of study ``slug``."""
    response.set_cookie(
        REFUSAL_COOKIE,
        signing.dumps({"status": status, "message": message}, salt=REFUSAL_SALT),
        max_age=REFUSAL_SECONDS,
        path=f"/s/{slug}/",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def refusal_recalled(request: HttpRequest) -> tuple[int, str] | None:
    """The (status, message) the entry view left for this browser, if still valid."""
    value = request.COOKIES.get(REFUSAL_COOKIE)
    if not value:
        return None
    try:
        data = signing.loads(value, salt=REFUSAL_SALT, max_age=REFUSAL_SECONDS)
        status, message = int(data["status"]), str(data["message"])
    except (signing.BadSignature, ValueError, KeyError, TypeError):
        return None
    return (status, message) if 400 <= status < 500 else None
