"""The project's settings (config.settings) with the harness's URLs: the project's pages plus the
minimal answer view (benchmarks/load/minimal.py). Everything else — middleware, database,
production checks — is the project's own; `python -m benchmarks.load` runs gunicorn with
DJANGO_SETTINGS_MODULE=benchmarks.load.settings."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.load.urls"
