"""Browser-test fixtures shared by tests/survey and tests/reconstruction: a plain-HTTP live
server, one Chromium per module, a context per test.

Chromium is Debian's (/usr/bin/chromium, or FVR_CHROMIUM); Playwright never downloads one.
Nothing leaves the machine: Prolific's completion URL is answered by a local stub and any
other non-local request is aborted. A folder's conftest imports these fixtures (rather than
tests/conftest.py defining them for every folder), so that the live server's HTTPS-only
hardening stays on for the tests that rely on pytest-django's own server.
"""

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from tests.conftest import CHROMIUM

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
PROLIFIC_ORIGIN = "https://app.prolific.com"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


@pytest.fixture(scope="module")
def live_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """pytest-django's live server, started with the HTTPS-only hardening switched off.

    The settings enable HTTPS redirects and Secure cookies whenever DEBUG is off, and
    SecurityMiddleware reads them once, when the server thread builds its handler, so they
    are overridden before the server starts (a per-test `settings` change would be too late).
    The server also serves MEDIA_ROOT (Django's LiveServerThread reads it per request), so the
    question images load from each test's temporary media folder.
    """
    addr = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    with override_settings(
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        SECURE_HSTS_SECONDS=0,
    ):
        server = LiveServer(addr)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for the module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with pytest.MonkeyPatch.context() as mp:
        # Playwright's sync API runs an event loop in this thread; the test's ORM calls are
        # still synchronous and the live server uses its own threads.
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield chromium
            finally:
                chromium.close()


def _route_offline(route: object) -> None:
    """Answer Prolific locally, let the live server through, abort everything else."""
    url = route.request.url
    if url.startswith(PROLIFIC_ORIGIN + "/"):
        route.fulfill(
            status=200,
            content_type="text/html",
            body="<!doctype html><title>Prolific</title><h1>Prolific stub</h1>",
        )
    elif urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def browser_context_args() -> dict:
    """Arguments for `new_context`; override in a test module or with indirect parametrize."""
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def context(browser: object, live_server: LiveServer, browser_context_args: dict) -> Iterator:
    """A fresh browser context (own cookies, so a new participant) per test."""
    ctx = browser.new_context(base_url=live_server.url, **browser_context_args)
    ctx.set_default_timeout(10_000)
    ctx.route("**/*", _route_offline)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: object) -> Iterator:
    """A page in the test's context; uncaught JavaScript errors and CSP violations fail it."""
    errors: list[str] = []
    p = context.new_page()
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield p
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"
