"""config/settings.py's keys: none that ships in the repository is ever accepted.

Settings are loaded afresh for each case (runpy, or a new interpreter for `django.setup()`), with
the environment of that case, so the process's own settings are never touched.
"""

import os
import stat
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from survey.models import pseudonymise
from survey.ratelimit import client_key
from tests.settings_helpers import (
    EARLIER_FALLBACK,
    KEY_VARIABLES,
    REPO,
    load_settings,
    random_key,
    shipped_keys,
)


def test_the_repository_s_keys_are_found() -> None:
    """The scan below sees the placeholders it must (else the refusals would prove nothing)."""
    keys = shipped_keys()
    assert EARLIER_FALLBACK in keys
    assert "replace-with-50-random-characters" in keys  # deploy/fvr-study.env, README
    assert "not-the-secret-key" in keys  # tests/survey/test_browser_cookie.py signs with it


@pytest.mark.parametrize("production", ["0", "1"])
@pytest.mark.parametrize("variable", KEY_VARIABLES)
def test_with_debug_off_every_key_that_ships_in_the_repository_is_refused(
    monkeypatch, tmp_path, production, variable
) -> None:
    for value in ["", *shipped_keys()]:
        env = {name: random_key() for name in KEY_VARIABLES}
        env[variable] = value
        with pytest.raises(ImproperlyConfigured, match=variable):
            load_settings(monkeypatch, tmp_path, DJANGO_PRODUCTION=production, **env)
    # The same settings start with random keys: the refusals above are about the keys.
    env = {name: random_key() for name in KEY_VARIABLES}
    loaded = load_settings(monkeypatch, tmp_path, DJANGO_PRODUCTION=production, **env)
    assert (loaded["SECRET_KEY"], loaded["FVR_PSEUDONYM_KEY"]) == tuple(env.values())


@pytest.mark.parametrize("value", ["", EARLIER_FALLBACK, "replace-with-50-random-characters"])
def test_django_does_not_start_with_an_empty_or_shipped_secret_key(tmp_path, value) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "FVR_VAR_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": value,
            "FVR_PSEUDONYM_KEY": random_key(),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY")
    assert "token_urlsafe" in last_line  # says how to make one
    assert not any(tmp_path.iterdir())  # nothing generated with DEBUG off


def test_in_debug_each_key_is_made_once_and_kept_in_var_dir_for_its_owner_only(
    monkeypatch, tmp_path
) -> None:
    first = load_settings(monkeypatch, tmp_path, DJANGO_DEBUG="1")
    again = load_settings(monkeypatch, tmp_path, DJANGO_DEBUG="1")
    secret, pseudonym = first["SECRET_KEY"], first["FVR_PSEUDONYM_KEY"]
    assert (again["SECRET_KEY"], again["FVR_PSEUDONYM_KEY"]) == (secret, pseudonym)
    assert secret != pseudonym
    assert not {secret, pseudonym} & set(shipped_keys())
    files = {path.read_text().strip(): path for path in tmp_path.iterdir()}
    assert set(files) == {secret, pseudonym}  # two files, nothing else left behind
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another checkout (another VAR_DIR) gets keys of its own.
    other = load_settings(monkeypatch, tmp_path / "other", DJANGO_DEBUG="1")
    assert other["SECRET_KEY"] != secret
    assert other["FVR_PSEUDONYM_KEY"] != pseudonym


def test_in_debug_a_shipped_key_is_still_refused(monkeypatch, tmp_path) -> None:
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY is a placeholder"):
        load_settings(monkeypatch, tmp_path, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=EARLIER_FALLBACK)


@pytest.mark.parametrize("debug", ["0", "1"])
def test_production_needs_its_own_pseudonym_key(monkeypatch, tmp_path, debug) -> None:
    with pytest.raises(ImproperlyConfigured, match="FVR_PSEUDONYM_KEY is empty"):
        load_settings(
            monkeypatch,
            tmp_path,
            DJANGO_DEBUG=debug,
            DJANGO_PRODUCTION="1",
            DJANGO_SECRET_KEY=random_key(),
        )


@pytest.mark.parametrize("production", [False, True], ids=["development", "production"])
def test_rotating_the_secret_key_leaves_pseudonyms_and_ip_hashes_unchanged(
    monkeypatch, tmp_path, settings, production
) -> None:
    # Development: the pseudonym key kept in VAR_DIR; production: the one in the environment.
    env = {"DJANGO_PRODUCTION": "1", "FVR_PSEUDONYM_KEY": random_key()} if production else {}
    seen = set()
    for _ in range(2):
        loaded = load_settings(
            monkeypatch, tmp_path, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=random_key(), **env
        )
        settings.SECRET_KEY = loaded["SECRET_KEY"]
        settings.FVR_PSEUDONYM_KEY = loaded["FVR_PSEUDONYM_KEY"]
        seen.add((pseudonymise("5f1d2c3b4a5968778695a4b3"), client_key("198.51.100.7")))
    assert len(seen) == 1
