"""The project's settings (config.settings) with the harness's URLs: the project's pages plus the
minimal answer view (benchmarks/load/minimal.py). Everything else — middleware, database,
production checks — is the project's own; `python -m benchmarks.load` runs gunicorn with
DJANGO_SETTINGS_MODULE=benchmarks.load.settings. With `--cpu-by-endpoint` (the environment
variable of benchmarks/load/endpoint_cpu.py set), one middleware more, first: it times each
request's CPU."""

import os

from benchmarks.load.endpoint_cpu import ENV as _ENDPOINT_CPU
from config.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.load.urls"

if os.environ.get(_ENDPOINT_CPU):
    MIDDLEWARE = ["benchmarks.load.endpoint_cpu.middleware", *MIDDLEWARE]  # noqa: F405
