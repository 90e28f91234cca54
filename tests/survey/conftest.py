"""Survey test fixtures: synthetic face folders, Prolific's recorded replies; and for the
browser tests the shared browser fixtures (tests/browser_fixtures.py: a plain-HTTP live
server, one Chromium per module, a context per test).
"""

from pathlib import Path

import pytest
import requests

from survey.prolific import client as prolific_client
from tests.browser_fixtures import (  # noqa: F401  (fixtures, found here by pytest)
    browser,
    browser_context_args,
    context,
    live_server,
    page,
)
from tests.factories import synthetic_face_tree
from tests.survey.prolific_replay import TOKEN


@pytest.fixture
def replay(monkeypatch, settings):
    """Prolific's real client, answered by recordings (tests/survey/prolific_replay.py): set
    `["adapter"]` per test."""
    settings.FVR_PROLIFIC_TOKEN = TOKEN
    holder = {}

    def session() -> requests.Session:
        s = requests.Session()
        s.mount("https://", holder["adapter"])
        return s

    # A client made without a session makes one with `Session`, looked up in its module.
    monkeypatch.setattr(prolific_client, "Session", session)
    return holder


@pytest.fixture
def synthetic_faces(tmp_path: Path) -> Path:
    """An identity-per-folder tree of synthetic JPEGs (no real photos needed)."""
    return synthetic_face_tree(tmp_path / "faces", 14, lambda i: 2 + i % 2)
