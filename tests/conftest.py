"""Shared fixtures; tests needing PostgreSQL, Chromium or face photos skip with a reason.

With FVR_REQUIRE_ALL=1 (set by .ci/run) a skipped test fails the run: in CI nothing skips.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection

CHROMIUM = os.environ.get("FVR_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The default PBKDF2 costs about a second per user on this machine's cores.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _per_process_stores_empty() -> None:
    """Each test starts with nothing kept by the process (survey.studies, survey.questions):
    rows a rolled-back test left behind can come back under the same ids."""
    from survey.questions import questions_clear
    from survey.services.timeouts import arrival_marking_forget
    from survey.studies import studies_forget

    studies_forget()
    questions_clear()
    arrival_marking_forget()


@pytest.fixture
def face_data() -> Path:
    """The folder of real face photos (contains lfw/ and att_faces/), from FVR_FACE_DATA."""
    root = os.environ.get("FVR_FACE_DATA", "")
    if not root or not (Path(root) / "lfw").is_dir():
        pytest.skip("face photos not available: set FVR_FACE_DATA to a folder containing lfw/")
    return Path(root)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-only",
        action="store_true",
        help="run only tests that use the database (the PostgreSQL pass of `make test`)",
    )


def uses_database(item: pytest.Item) -> bool:
    """Whether a test touches the database (directly or through a fixture)."""
    names = getattr(item, "fixturenames", ())
    return bool(
        item.get_closest_marker("django_db")
        or {"db", "transactional_db", "django_db_setup"}.intersection(names)
    )


# The tests that run in the base install (scripts/test-base) as well: marked `base`, so that
# `make test` can run them there alone instead of twice (their browser tests aside).
BASE_TESTS = {"survey", "analysis"}
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).resolve()
        if path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in BASE_TESTS:
            item.add_marker(pytest.mark.base)
    if config.getoption("--db-only"):
        kept = [item for item in items if uses_database(item)]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    is_postgres = connection.vendor == "postgresql"
    for item in items:
        if "postgres" in item.keywords and not is_postgres:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs PostgreSQL: run with DATABASE_URL=postgres://... (make test does)"
                )
            )
        if "browser" in item.keywords and not shutil.which(CHROMIUM):
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs Chromium at {CHROMIUM}: apt-get install chromium "
                    "(or set FVR_CHROMIUM)"
                )
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("FVR_REQUIRE_ALL") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"FVR_REQUIRE_ALL=1: {len(skipped)} test(s) skipped; in CI nothing may skip.",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
