"""The server-error page, and 503 instead of 500 when the database cannot be reached.

Django calls ``handler500`` inside the ``except`` block of the request that failed, so the
exception is in ``sys.exc_info()``. An unreachable or restarting database (PostgreSQL
restarting, a failover, connections exhausted) is not a bug in the request: it gets
``503 Service Unavailable`` with ``Retry-After``, a page telling the participant that what
they already submitted is kept, and JSON for API clients. The study's pages keep the first
answer to every question, so retrying is always safe; ``static/survey/survey.js`` retries an
answer on any 5xx by itself. Every other uncaught error stays a 500. Both are logged by
Django's request logger as usual (``django.request``), with the traceback.

The pages are rendered without a request (no context processors): nothing on them may need
the database or the session, which may be what failed.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

RETRY_AFTER_SECONDS = 5

UNAVAILABLE = (
    "The study is briefly unavailable. Everything you have already submitted is saved. "
    f"Please wait a few seconds and reload this page (it will try again in {RETRY_AFTER_SECONDS} "
    "seconds by itself)."
)
FAILED = (
    "Something went wrong on our side. Everything you have already submitted is saved. "
    "Please reload this page; if this keeps happening, contact the researchers through Prolific."
)


def database_unavailable(error: BaseException | None) -> bool:
    """The request failed because the database could not be reached or dropped the connection."""
    return isinstance(error, OperationalError | InterfaceError)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get(
        "Accept", ""
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 + Retry-After for an unreachable database, else 500."""
    unavailable = database_unavailable(sys.exc_info()[1])
    status, message = (503, UNAVAILABLE) if unavailable else (500, FAILED)
    if _wants_json(request):
        response: HttpResponse = JsonResponse({"detail": message}, status=status)
    else:
        template = loader.get_template("503.html" if unavailable else "500.html")
        context = {"message": message, "retry_after": RETRY_AFTER_SECONDS}
        response = HttpResponse(template.render(context), status=status)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
