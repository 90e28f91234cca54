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
from survey.services.locks import participant_lock_note, participant_locked
from survey.studies import study_of

COOKIE = "fvr_participant"
SALT = "survey.browser.participant"


def _signed_cookie(request: HttpRequest, name: str, *, salt: str, max_age: int) -> object:
    """The data signed into cookie ``name``; None when absent, forged, expired or not ours."""
    value = request.COOKIES.get(name)
    if not value:
        return None
    try:
        return signing.loads(value, salt=salt, max_age=max_age)
    except (signing.BadSignature, ValueError):
        return None


def _signed_cookie_set(
    response: HttpResponse, name: str, data: object, *, salt: str, max_age: int, path: str = "/"
) -> None:
    """Sign ``data`` into cookie ``name``: HttpOnly, SameSite=Lax, Secure as the session's."""
    response.set_cookie(
        name,
        signing.dumps(data, salt=salt),
        max_age=max_age,
        path=path,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def browser_participants(request: HttpRequest) -> dict[str, int]:
    """slug → participant id, as signed into this browser's cookie ({} when absent or forged)."""
    known = _signed_cookie(request, COOKIE, salt=SALT, max_age=settings.SESSION_COOKIE_AGE)
    if not isinstance(known, dict):
        return {}
    return {str(slug): pk for slug, pk in known.items() if isinstance(pk, int)}


def browser_participant(
    request: HttpRequest, slug: str, *, lock: bool = False
) -> Participant | None:
    """The participant this browser is in the study ``slug``, with its study: one query (the
    study is the one this process keeps, survey.studies).

    ``lock``: read under the participant row's lock, for the transaction the caller has
    opened (a participant's POST), so that its writes need no second read."""
    participant_id = browser_participants(request).get(slug)
    if participant_id is None:
        return None
    if lock:
        found = participant_locked(participant_id)
    else:
        found = next(iter(Participant.objects.filter(pk=participant_id).order_by()[:1]), None)
        if found is not None:
            found.study = study_of(found.study_id)
    if found is None or found.study.slug != slug:
        return None
    return participant_lock_note(found) if lock else found


def browser_remember(
    request: HttpRequest, response: HttpResponse, *, slug: str, participant_id: int
) -> None:
    """Sign ``participant_id`` into the browser's cookie for ``slug`` (other studies kept)."""
    known = browser_participants(request)
    if known.get(slug) == participant_id:
        return
    known[slug] = participant_id
    _signed_cookie_set(response, COOKIE, known, salt=SALT, max_age=settings.SESSION_COOKIE_AGE)


# A refused entry is shown at a URL without the Prolific IDs: the entry view redirects there
# and leaves the reason in this short-lived signed cookie (survey.views.refused).
REFUSAL_COOKIE = "fvr_refusal"
REFUSAL_SALT = "survey.browser.refusal"
REFUSAL_SECONDS = 600


def refusal_remember(response: HttpResponse, *, slug: str, status: int, message: str) -> None:
    """Carry a refusal's status and message to the refusal page of study ``slug``."""
    _signed_cookie_set(
        response,
        REFUSAL_COOKIE,
        {"status": status, "message": message},
        salt=REFUSAL_SALT,
        max_age=REFUSAL_SECONDS,
        path=f"/s/{slug}/",
    )


def refusal_recalled(request: HttpRequest) -> tuple[int, str] | None:
    """The (status, message) the entry view left for this browser, if still valid."""
    data = _signed_cookie(request, REFUSAL_COOKIE, salt=REFUSAL_SALT, max_age=REFUSAL_SECONDS)
    try:
        status, message = int(data["status"]), str(data["message"])
    except (ValueError, KeyError, TypeError):  # absent (None) or not what we wrote
        return None
    return (status, message) if 400 <= status < 500 else None
