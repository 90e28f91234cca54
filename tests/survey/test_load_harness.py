"""The load harness at a tiny scale: real gunicorn, PostgreSQL and locust; nothing lost."""

import json
import os
import re
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
    """The test run's PostgreSQL server, with a database of the harness's own, named after the
    test database (fvr_load_test_fvr_study), so that test runs on different databases of one
    server do not drop each other's."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    name = "fvr_load_" + re.sub(r"\W", "_", db["NAME"])[:50]
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


def nginx_required() -> None:
    """Skip without nginx; fail instead under FVR_REQUIRE_ALL=1."""
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").is_file()):
        if os.environ.get("FVR_REQUIRE_ALL") == "1":
            pytest.fail("FVR_REQUIRE_ALL=1: install nginx (apt-get install nginx-light)")
        pytest.skip("needs nginx (apt-get install nginx-light; .ci/run installs it)")


def harness_run(tmp_path: Path, *options: str) -> tuple[dict, float]:
    """Run `python -m benchmarks.load` at a tiny scale; return its JSON figures and duration
    (its output is left in tmp_path/stdout.txt)."""
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
    (tmp_path / "stdout.txt").write_text(run.stdout)
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
    # Time from the release to question 1, per arrival (three reading pauses of ≈ 0.5 s in it).
    assert 1.0 < burst["to_question_s"]["p50"] <= burst["to_question_s"]["p95"]
    assert burst["to_question_s"]["p95"] <= burst["to_question_s"]["max"]

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
    nginx_required()
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


def test_capacity_efficiency_saturation_and_fractions(tmp_path: Path) -> None:
    """Issue 19 at a tiny scale, in one run: the saturation search (at most 3 steps of 6 s),
    runs at 60 % and 150 % of its rate, then the minimal answer view's baseline. The JSON has
    the saturation rate, both runs (the overload with its latency growth) and positive CPU
    figures per question for the flow (the 60 % run) and the minimal view, with their ratio;
    the efficiency line is printed; nothing is lost over all phases. With --cpu-by-endpoint,
    every answer of the flow is timed in Django once, and the files name endpoints only."""
    summary, _ = harness_run(
        tmp_path,
        "--minutes=0",
        "--saturate=5,10,3",
        "--step-seconds=6",
        "--at=0.6:0.15,1.5:0.15",
        "--efficiency",
        "--efficiency-seconds=8",
        "--cpu-by-endpoint",
        f"--database-url={harness_database_url()}",
    )
    assert summary["broken"] == []
    saturation = summary["saturation"]
    assert saturation["rate"] > 0
    assert 1 <= len(saturation["steps"]) <= 3
    assert saturation["steps"][0]["users"] == 5
    assert saturation["seconds_per_question_per_user"] > 0

    planned, overload = summary["capacity_runs"]
    assert (planned["fraction"], overload["fraction"]) == (0.6, 1.5)
    assert planned["target_rate"] == pytest.approx(0.6 * saturation["rate"], abs=0.01)
    assert planned["users"] < overload["users"]
    assert planned["rate"] > 0
    assert overload["rate"] > 0
    assert planned["errors"] == 0
    assert set(overload["growth"]) == {"p95", "p99"}
    assert overload["server_errors"] == 0

    efficiency = summary["efficiency"]
    assert efficiency["flow_phase"] == "at60"
    for key in ("app_ms_per_question", "database_ms_per_question", "minimal_app_ms"):
        assert efficiency[key] > 0, key
    assert efficiency["minimal_answers"] > 0
    ratio = efficiency["app_ms_per_question"] / efficiency["minimal_app_ms"]
    assert efficiency["ratio"] == pytest.approx(ratio, abs=0.01)
    out = (tmp_path / "stdout.txt").read_text()
    assert "efficiency: app CPU per question " in out
    assert f"ratio {efficiency['ratio']:.2f} (target ≤ 2)" in out
    assert "saturation: " in out
    assert "at 150%: target" in out

    in_django = efficiency["in_django"]
    assert in_django["answers_timed"] == efficiency["flow_answers"]
    assert 0 < in_django["minimal_ms"] < in_django["answer_ms"]
    assert in_django["other_ms_per_question"] > 0
    assert "in Django (middleware and view, --cpu-by-endpoint): an answer " in out
    assert "server CPU in Django, by endpoint" in out
    lines = [
        line
        for path in (tmp_path / "work" / "endpoint-cpu").glob("*.log")
        for line in path.read_text().splitlines()
    ]
    names = {line.split("\t")[1] for line in lines}
    assert {
        "GET survey:entry",
        "POST survey:question (JSON)",
        "POST load_minimal_answer (JSON)",
    } <= names
    assert all(re.fullmatch(r"(GET|POST) [\w:]+( \(JSON\))?", name) for name in names), names

    figures = summary["figures"]
    assert figures["answers acknowledged"] == figures["answers stored"] > 0
    # The minimal view's users entered too: every arrival is in the database, none lost.
    assert figures["completion codes issued"] == figures["participants with every answer"]


def test_two_app_servers_behind_nginx_keep_every_invariant(tmp_path: Path) -> None:
    """Scale-out: two gunicorn masters (their own ports and per-process caches) behind nginx
    (deploy/nginx.conf with one upstream line each) on one PostgreSQL; both answered
    participants' requests, and balance, one answer per question and codes all hold."""
    nginx_required()
    summary, _ = harness_run(
        tmp_path,
        "--minutes=0.3",
        "--proxy=nginx",
        "--app-servers=2",
        f"--database-url={harness_database_url()}",
    )
    assert summary["broken"] == []
    servers = summary["app_servers"]
    assert [server["name"] for server in servers] == ["gunicorn-1", "gunicorn-2"]
    assert len({server["port"] for server in servers}) == 2
    assert all(server["requests"] > 0 for server in servers), servers
    assert summary["sustained"]["total"]["failures"] == 0
    figures = summary["figures"]
    assert figures["answers acknowledged"] == figures["answers stored"] > 0
    assert figures["completion codes issued"] == figures["completion codes the clients got"] > 0
    assert all(spread <= 1 for spread in figures["assignment spread"].values())
    conf = (tmp_path / "work" / "nginx.conf").read_text()
    assert conf.count("server 127.0.0.1:") == 2


def test_capacity_options_refused_when_they_cannot_run() -> None:
    """Several app servers need nginx in front; --at needs a rate; --efficiency needs a flow."""
    from benchmarks.load.run import arguments

    for argv in (
        ["--app-servers=2"],
        ["--at=0.6:1"],
        ["--minutes=0", "--burst=5", "--efficiency"],
        ["--saturate", "--rate=10"],
    ):
        with pytest.raises(SystemExit):
            arguments(argv)
    args = arguments(["--minutes=0", "--saturate"])
    assert args.saturate == (50, 50, 12)
    assert args.at == [(0.6, 10.0), (1.5, 3.0)]
