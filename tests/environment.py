"""pytest plugin (loaded by `-p tests.environment` in pyproject's addopts): the run's keys.

The tests run with DEBUG off, where config/settings.py refuses to start without
DJANGO_SECRET_KEY and FVR_PSEUDONYM_KEY. A conftest would be read too late (pytest-django
loads the settings first), and fixed values in pyproject.toml would be keys that ship in the
repository, which the settings refuse. So a plugin, imported before pytest-django reads the
settings, gives each run random keys; values the caller exported (scripts/test) are kept.
Subprocesses started by the tests inherit them.
"""

import os
import secrets

for _name in ("DJANGO_SECRET_KEY", "FVR_PSEUDONYM_KEY"):
    if not os.environ.get(_name):
        os.environ[_name] = secrets.token_urlsafe(50)
