"""config/settings.py loaded afresh, its key variables, and the keys the repository ships.

Shared by tests/test_settings.py and the tests that run the settings with a deployment's
environment (tests/survey/test_rate_limit.py, tests/test_nginx.py).
"""

import re
import runpy
import secrets
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(settings.BASE_DIR)
SETTINGS_FILE = REPO / "config" / "settings.py"
KEY_VARIABLES = ("DJANGO_SECRET_KEY", "FVR_PSEUDONYM_KEY")
# The development fallback that config/settings.py shipped up to e8e8a60: an old checkout, or a
# copy of that file, still holds it.
EARLIER_FALLBACK = "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"

# Where the repository writes keys: env files, docs, shell, Python, and the tests themselves.
SCANNED = [
    ".env.example",
    "README.md",
    "DATA_PROTECTION.md",
    "Makefile",
    "pyproject.toml",
    ".ci/run",
    "config/**/*",
    "docs/**/*",
    "deploy/**/*",
    "benchmarks/**/*",
    "scripts/**/*",
    "tests/**/*",
]
# NAME=value at the start of a line (env files, shell, the docs' code blocks).
ENV_ASSIGNMENT = re.compile(
    r"^\s*(?:export\s+)?(?:DJANGO_SECRET_KEY|FVR_PSEUDONYM_KEY)=(?P<value>[^\s#]*)", re.MULTILINE
)
# In Python: a string literal assigned to SECRET_KEY, or as a DJANGO_SECRET_KEY or
# FVR_PSEUDONYM_KEY item or keyword argument.
PYTHON_ASSIGNMENT = re.compile(
    r"""(?:SECRET_KEY|PSEUDONYM_KEY)["']?\s*[:=]\s*(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)"""
)
# The literal key of a signing.dumps or signing.loads call: a key a test signs with.
SIGNING_KEY = re.compile(r"""signing\.\w+\(.*\bkey\s*=\s*(?P<q>["'])(?P<value>[^"'\n]+)(?P=q)""")


def shipped_keys() -> list[str]:
    """Every non-empty literal key the repository holds, and the fallback it used to hold."""
    found = {EARLIER_FALLBACK}
    for pattern in SCANNED:
        for path in REPO.glob(pattern):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if path.suffix == ".py":
                matches = [*PYTHON_ASSIGNMENT.finditer(text), *SIGNING_KEY.finditer(text)]
            else:
                matches = [*ENV_ASSIGNMENT.finditer(text)]
            for match in matches:
                value = match["value"].strip("\"'")
                if value and not value.startswith("$"):  # "$(…)": made when the script runs
                    found.add(value)
    return sorted(found)


def random_key() -> str:
    return secrets.token_urlsafe(50)


def load_settings(monkeypatch: pytest.MonkeyPatch, var_dir: Path, **env: str) -> dict:
    """config/settings.py run afresh with ``env`` (and no other key variables) set."""
    for name in (*KEY_VARIABLES, "DJANGO_DEBUG", "DJANGO_PRODUCTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FVR_VAR_DIR", str(var_dir))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def deploy_environment() -> dict[str, str]:
    """deploy/fvr-study.env's NAME=value lines (gunicorn's environment behind nginx)."""
    lines = (REPO / "deploy" / "fvr-study.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
