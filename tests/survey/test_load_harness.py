"""The load harness at a tiny scale: real gunicorn, PostgreSQL and locust; nothing lost."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db]

REPO = Path(__file__).resolve().parents[2]


def harness_database_url() -> str:
    """The test run's PostgreSQL server, with a database of the harness's own."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/fvr_load_pytest"


def harness_run(tmp_path: Path, *options: str) -> tuple[dict, float]:
    """Run `python -m benchmarks.load` at a tiny scale; return its JSON figures and duration."""
    summary_path = tmp_path / "summary.json"
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load",
            "--users=10",
            "--spawn-rate=10",
            "--think=0.3",
            "--per-method=6",
            "--workers=2",
            "--threads=4",
            f"--workdir={tmp_path / 'work'}",
            f"--json={summary_path}",
            *options,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, f"harness failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "all invariants hold" in run.stdout
    return json.loads(summary_path.read_text()), elapsed


def test_tiny_load_run_keeps_every_answer_and_balances_arrivals(tmp_path: Path) -> None:
    summary, _ = harness_run(
        tmp_path, "--burst=20", "--minutes=0.35", f"--database-url={harness_database_url()}"
    )
    assert summary["broken"] == []

    burst = summary["burst"]
    assert burst["total"]["failures"] == 0
    assert burst["users"] == 20
    assert all(spread <= 1 for spread in burst["spread"].values())

    sustained = summary["sustained"]
    assert sustained["total"]["failures"] == 0
    assert sustained["abandoned"] == 0
    endpoints = sustained["endpoints"]
    # As the page's script: a page for the first question, then each answer's acknowledgement
    # brings the next question; six images per question answered, none through Django.
    assert summary["javascript"] is True
    assert endpoints["image"]["count"] == 6 * endpoints["answer POST"]["count"]
    assert endpoints["question GET"]["count"] < endpoints["answer POST"]["count"] / 5
    figures = summary["figures"]
    assert figures["answers acknowledged"] == figures["answers stored"] > 0
    assert figures["completion codes issued"] == figures["participants with every answer"] > 0
    assert figures["participants"] >= 20 + 10
    assert summary["images_served_by"] == "config.wsgi.MediaFiles"
    # Its time is not asserted: timings are the benchmark's (benchmarks/load/run.py) to print.


def test_faults_during_a_run_lose_nothing(tmp_path: Path) -> None:
    """Two gunicorn reloads, a killed worker, a PostgreSQL restart, a full app restart.

    The PostgreSQL restart cuts every connection to its cluster, so it runs only on a cluster
    named in FVR_LOAD_PG_CLUSTER (with FVR_LOAD_DATABASE_URL on it), never on the test run's.
    """
    cluster = os.environ.get("FVR_LOAD_PG_CLUSTER", "")
    url = os.environ.get("FVR_LOAD_DATABASE_URL", "") if cluster else ""
    if not cluster and os.environ.get("FVR_REQUIRE_ALL") == "1":
        pytest.fail("FVR_REQUIRE_ALL=1: set FVR_LOAD_PG_CLUSTER for the PostgreSQL restart")
    summary, _ = harness_run(
        tmp_path,
        "--minutes=0.75",
        "--faults",
        f"--pg-cluster={cluster}",
        f"--database-url={url or harness_database_url()}",
    )
    assert summary["broken"] == []
    faults = summary["sustained"]["faults"]
    done = [f["fault"] for f in faults if "skipped" not in f]
    expected = ["gunicorn HUP", "gunicorn HUP", "SIGKILL one worker", "full app restart"]
    if cluster:
        expected.insert(3, "PostgreSQL fast restart")
    assert done == expected
    assert summary["sustained"]["abandoned"] == 0
    # While PostgreSQL restarts the app answers 503 + Retry-After (config.errors), never 500.
    errors = [e["error"] for e in summary["sustained"]["errors"]]
    assert not [e for e in errors if "HTTP 500" in e], errors
    figures = summary["figures"]
    assert figures["answers acknowledged"] == figures["answers stored"] > 0
    assert figures["completion codes issued"] == figures["participants with every answer"] > 0


def test_run_behind_nginx_without_javascript_serves_images_from_nginx(tmp_path: Path) -> None:
    """deploy/nginx.conf in front: media from disk, no Prolific ID in its access log; the
    participants take the no-JavaScript path (a page per question)."""
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").is_file()):
        if os.environ.get("FVR_REQUIRE_ALL") == "1":
            pytest.fail("FVR_REQUIRE_ALL=1: install nginx (apt-get install nginx-light)")
        pytest.skip("needs nginx (apt-get install nginx-light; .ci/run installs it)")
    summary, _ = harness_run(
        tmp_path,
        "--minutes=0.35",
        "--proxy=nginx",
        "--no-javascript",
        f"--database-url={harness_database_url()}",
    )
    assert summary["broken"] == []
    assert summary["images_served_by"] == "nginx (deploy/nginx.conf)"
    assert summary["javascript"] is False
    endpoints = summary["sustained"]["endpoints"]
    assert endpoints["question GET"]["count"] == endpoints["answer POST"]["count"] > 0
    assert endpoints["image"]["count"] == 6 * endpoints["question GET"]["count"]
    assert summary["sustained"]["total"]["failures"] == 0
    figures = summary["figures"]
    assert figures["answers acknowledged"] == figures["answers stored"] > 0
    assert figures["nginx access log"].endswith("Prolific IDs in it: 0")
    log = (tmp_path / "work" / "nginx-access.log").read_text()
    assert "GET /s/load/ HTTP/1.1" in log  # arrivals are logged, without their query string
    assert "PROLIFIC_PID" not in log
