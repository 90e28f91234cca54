"""Load harness: gunicorn on a fresh PostgreSQL database, simulated participants, nothing lost.

    .venv/bin/python -m benchmarks.load --users 200 --spawn-rate 50 --minutes 10 \
        [--burst 800] [--faults] [--efficiency] [--saturate [--at 0.6:10,1.5:3]] \
        [--proxy nginx [--app-servers 2]]

Creates (drops first) the database named by --database-url, migrates it, builds a demo study
(real photos from --faces or FVR_FACE_DATA/lfw when present, generated images otherwise),
starts gunicorn with production settings over plain HTTP on loopback (with --app-servers N,
N gunicorn masters behind nginx), then runs locust headless (`benchmarks/load/locustfile.py`):
first, with --burst N, N arrivals released at once (entry to question 1); then --users
participants taking the full flow for --minutes, with --faults injecting gunicorn reloads, a
killed worker, a PostgreSQL restart and a full app restart; then, with --saturate, the
saturation search and runs at --at fractions of it (benchmarks/load/capacity.py); then, with
--efficiency, the minimal answer view's CPU per question against the flow's. Prints
requests/s and p50/p95/p99 per endpoint, errors, and the "nothing lost" checks
(`benchmarks/load/invariants.py`); exits 1 when an invariant breaks or, without --faults, when
a request failed outside the overload runs and the saturation search. See docs/load.md.
"""

import argparse
import json
import os
import resource
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.load.capacity import efficiency_phase, fraction_runs, saturation_phase
from benchmarks.load.endpoint_cpu import ENV as ENDPOINT_CPU_ENV
from benchmarks.load.phases import (
    burst_phase,
    endpoint_cpu_directory,
    merged_log,
    sustained_phase,
)
from benchmarks.load.server import (
    REPO,
    Gunicorn,
    HarnessError,
    Nginx,
    Stack,
    free_port,
    server_environment,
)
from benchmarks.load.study import SLUG, prepare

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fvr_load"
DEFAULT_RUNS = "0.6:10,1.5:3"


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description="Load-test the participant flow; fail loudly if anything is lost.",
    )
    parser.add_argument("--users", type=int, default=200, help="concurrent participants")
    parser.add_argument("--spawn-rate", type=float, default=50, help="users started per second")
    parser.add_argument("--minutes", type=float, default=10, help="sustained run (0: none)")
    parser.add_argument("--burst", type=int, default=0, help="simultaneous arrivals first")
    parser.add_argument("--faults", action="store_true", help="inject faults while sustained")
    parser.add_argument("--think", type=float, default=2.0, help="seconds per question")
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="each participant of a flow phase starts after a random 0–S s, so that arrivals "
        "come as a steady stream, not in waves (default 0: all at once)",
    )
    parser.add_argument(
        "--no-javascript",
        dest="javascript",
        action="store_false",
        help="participants as browsers without JavaScript: POST, redirect, page per question "
        "(default: as the page's script, one request per question)",
    )
    parser.add_argument(
        "--proxy",
        choices=("none", "nginx"),
        default="none",
        help="nginx: nginx in front (deploy/nginx.conf) serves media and static files and "
        "proxies the rest; none: gunicorn serves everything (media through WhiteNoise)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--worker-class",
        choices=("gthread", "sync"),
        default="gthread",
        help="gunicorn's: gthread (threads, keep-alive; serves clients directly) or sync (one "
        "request at a time per process; only behind a buffering proxy, i.e. --proxy nginx)",
    )
    parser.add_argument("--per-method", type=int, default=20, help="match sets per FVR method")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--pg-cluster",
        default="15/main",
        help="VERSION/NAME of the cluster --faults restarts; empty: no PostgreSQL restart",
    )
    parser.add_argument("--faces", type=Path, help="identity-per-folder photos (default: LFW)")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "load")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    capacity_options(parser)
    args = parser.parse_args(argv)
    arguments_check(parser, args)
    return args


def capacity_options(parser: argparse.ArgumentParser) -> None:
    """Issue 19's options: efficiency ratio, saturation search, fractions, scale-out."""
    group = parser.add_argument_group("capacity (issue 19; docs/load.md)")
    group.add_argument(
        "--efficiency",
        action="store_true",
        help="last, --users posting the minimal answer view (benchmarks/load/minimal.py) for "
        "--efficiency-seconds: CPU per question of the flow against that view's",
    )
    group.add_argument("--efficiency-seconds", type=float, default=60, metavar="S")
    group.add_argument(
        "--saturate",
        nargs="?",
        const="50,50,12",
        type=users_steps,
        metavar="START,STEP,MAX",
        help="find the saturation rate: START users, then STEP more each --step-seconds, at "
        "most MAX steps (default 50,50,12), until a step adds < 5%% or pages p95 > 1 s",
    )
    group.add_argument("--step-seconds", type=float, default=45, metavar="S")
    group.add_argument(
        "--rate", type=float, help="questions/s to take the --at fractions of (no search)"
    )
    group.add_argument(
        "--at",
        type=fractions,
        metavar="F:MIN,...",
        help=f"runs at these fractions of the saturation rate, minutes each (default with "
        f"--saturate or --rate: {DEFAULT_RUNS}; '' for none)",
    )
    group.add_argument(
        "--app-servers",
        type=int,
        default=1,
        metavar="N",
        help="N gunicorn masters (--workers each) on their own ports behind nginx "
        "(needs --proxy nginx); faults hit the first",
    )
    group.add_argument(
        "--cpu-by-endpoint",
        action="store_true",
        help="time each request's CPU in Django (benchmarks/load/endpoint_cpu.py) and print it "
        "by endpoint after each phase; the efficiency line then splits the flow's CPU",
    )


def users_steps(text: str) -> tuple[int, int, int]:
    """'START,STEP,MAX' → three positive integers."""
    try:
        first, step, most = (int(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"START,STEP,MAX expected, got {text!r}") from error
    if min(first, step, most) < 1:
        raise argparse.ArgumentTypeError(f"START, STEP and MAX must be ≥ 1: {text!r}")
    return first, step, most


def fractions(text: str) -> list[tuple[float, float]]:
    """'0.6:10,1.5:3' → [(0.6, 10.0), (1.5, 3.0)] (fraction of the rate, minutes)."""
    runs = []
    for part in filter(None, text.split(",")):
        try:
            fraction, minutes = (float(value) for value in part.split(":"))
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"FRACTION:MINUTES expected, got {part!r}") from error
        if fraction <= 0 or minutes <= 0:
            raise argparse.ArgumentTypeError(f"fraction and minutes must be > 0: {part!r}")
        runs.append((fraction, minutes))
    return runs


def arguments_check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations that cannot run, refused before anything starts."""
    if args.at is None:
        args.at = fractions(DEFAULT_RUNS) if args.saturate or args.rate else []
    if args.at and not (args.saturate or args.rate):
        parser.error("--at needs --saturate or --rate (the rate its fractions are of)")
    if args.saturate and args.rate:
        parser.error("give --saturate (find the rate) or --rate (a known one), not both")
    flow = args.minutes > 0 or args.saturate or args.at
    if not flow and not args.burst:
        parser.error("nothing to run: give --minutes > 0, --burst N, --saturate or --rate")
    if args.efficiency and not flow:
        parser.error("--efficiency compares with the flow: add --minutes > 0, --saturate or --at")
    if args.worker_class == "sync" and args.proxy != "nginx":
        parser.error("--worker-class sync needs --proxy nginx (sync workers must not face clients)")
    if args.faults and args.minutes <= 0:
        parser.error("--faults needs a sustained run (--minutes > 0)")
    if args.app_servers < 1:
        parser.error("--app-servers must be ≥ 1")
    if args.app_servers > 1 and args.proxy != "nginx":
        parser.error("--app-servers N > 1 needs --proxy nginx (nginx balances the app servers)")


def open_files_raise() -> None:
    """Hundreds of simultaneous connections need more open files than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 10_000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65_536), hard))


def image_server(stack: Stack) -> str:
    """Who answers an image request: nginx, MediaFiles (before Django) or Django itself."""
    from config.wsgi import MEDIA_CACHE_CONTROL
    from survey.models import MatchSet

    server, front = stack.servers[0], stack.front
    url = MatchSet.objects.filter(study__slug=SLUG).first().query_image.url
    with urllib.request.urlopen(f"{(front or server).url}{url}", timeout=10) as response:
        private = response.headers.get("Cache-Control") == MEDIA_CACHE_CONTROL
        no_session = "Cookie" not in (response.headers.get("Vary") or "")
    if front is not None:
        # gunicorn runs without MediaFiles here, so only nginx can have answered with the file.
        try:
            urllib.request.urlopen(f"{server.url}{url}", timeout=10).close()
        except urllib.error.HTTPError as error:
            if error.code == 404 and private:
                return "nginx (deploy/nginx.conf)"
        return "gunicorn, behind nginx"
    return "config.wsgi.MediaFiles" if private and no_session else "Django"


def stack_build(args: argparse.Namespace, env: dict[str, str]) -> Stack:
    """--app-servers gunicorn masters (each on a free port) and, with --proxy nginx, nginx."""
    several = args.app_servers > 1
    servers = [
        Gunicorn(
            env=dict(env),
            workdir=args.workdir,
            port=free_port(),
            workers=args.workers,
            threads=args.threads,
            worker_class=args.worker_class,
            name=f"gunicorn-{n}" if several else "gunicorn",
            access_log=several,  # which server answered what (paths only)
        )
        for n in range(1, args.app_servers + 1)
    ]
    front = None
    if args.proxy == "nginx":
        for server in servers:
            server.env["FVR_SERVE_MEDIA_WHITENOISE"] = "0"  # nginx serves media, never gunicorn
            # As deploy/fvr-study.env: nginx on loopback is the proxy whose X-Forwarded-For is read.
            server.env["FVR_TRUSTED_PROXIES"] = "127.0.0.1"
        front = Nginx(
            workdir=args.workdir,
            port=free_port(),
            upstream=" ".join(f"127.0.0.1:{server.port}" for server in servers),
            media_root=Path(env["DJANGO_MEDIA_ROOT"]),
            static_root=Path(env["DJANGO_STATIC_ROOT"]),
        )
    return Stack(servers=servers, front=front)


def stack_start(args: argparse.Namespace, stack: Stack, summary: dict) -> None:
    """Start the app servers and nginx; say what runs where and who serves the images."""
    stack.start()
    threads = f" × {args.threads} threads" if args.worker_class == "gthread" else ""
    for server in stack.servers:
        print(f"{server.name}: {args.workers} {args.worker_class} workers{threads} at {server.url}")
    if stack.front is not None:
        print(f"nginx in front at {stack.front.url} (deploy/nginx.conf)")
    way = "the page's script (one request per question)" if args.javascript else "no script"
    print(f"participants answer as browsers with {way}")
    summary["images_served_by"] = image_server(stack)
    print(f"images served by {summary['images_served_by']}")


def phases_run(
    args: argparse.Namespace, stack: Stack, summary: dict, broken: list[str]
) -> list[dict]:
    """Burst, sustained run, saturation search and fraction runs, efficiency baseline: each
    as asked; return every phase's result (their client logs are checked together)."""
    results: list[dict] = []
    flow = None
    if args.burst:
        results.append(burst_phase(args, stack, summary, broken))
    if args.minutes > 0:
        flow = sustained_phase(args, stack, summary, broken)
        results.append(flow)
    if args.saturate or args.at:
        # Without the search: about think time + 0.1 s per question per user (docs/load.md).
        rate, cycle = args.rate, args.think + 0.1
        if args.saturate:
            saturated, rate, cycle = saturation_phase(args, stack, summary, broken)
            results.append(saturated)
            flow = flow or saturated
        runs = fraction_runs(args, stack, rate, cycle, summary, broken)
        results += runs
        if runs and (flow is None or flow["phase"] != "sustained"):
            flow = runs[0]  # the efficiency's flow: the sustained run, else the first --at run
    if args.efficiency:
        results.append(efficiency_phase(args, stack, flow, summary, broken))
    return results


def app_servers_check(stack: Stack, summary: dict, broken: list[str]) -> str:
    """With several app servers: the participants' requests each answered (its access log,
    through nginx); none may have answered nothing."""
    answered = {server.name: server.participant_requests() for server in stack.servers}
    summary["app_servers"] = [
        {"name": server.name, "port": server.port, "requests": answered[server.name]}
        for server in stack.servers
    ]
    idle = [name for name, count in answered.items() if count == 0]
    if idle:
        broken.append(f"app servers that answered nothing: {', '.join(idle)}")
    return ", ".join(f"{name} {count} participant requests" for name, count in answered.items())


def finish(
    args: argparse.Namespace,
    stack: Stack,
    results: list[dict],
    summary: dict,
    broken: list[str],
) -> int:
    """The "nothing lost" checks over every phase's client log; report; the exit status."""
    from django.db import connections

    from benchmarks.load.invariants import invariants_check

    connections.close_all()  # a PostgreSQL restart may have cut this process's connection
    log = merged_log(results)
    found = invariants_check(slug=SLUG, log=log)
    broken += found.broken
    if stack.front is not None:
        found.figures["nginx access log"] = access_log_check(stack.front, log["entered"], broken)
    if len(stack.servers) > 1:
        found.figures["app servers answered"] = app_servers_check(stack, summary, broken)
    load_after = os.getloadavg()
    print("\n== nothing lost ==")
    for name, value in found.figures.items():
        print(f"  {name}: {value}")
    print(f"  load average before/after: {summary['load_before']:.2f} / {load_after[0]:.2f}")
    summary |= {"figures": found.figures, "broken": broken, "load_after": load_after[0]}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    if broken:
        print("\n" + "!" * 72, file=sys.stderr)
        print("LOAD RUN FAILED — checks broken:", file=sys.stderr)
        for problem in broken:
            print(f"  ✗ {problem}", file=sys.stderr)
        print("!" * 72, file=sys.stderr)
        return 1
    print("\nall invariants hold: every acknowledged answer is stored exactly once.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    open_files_raise()
    args.workdir = args.workdir.resolve()
    env = server_environment(database_url=args.database_url, workdir=args.workdir)
    if args.cpu_by_endpoint:
        directory = endpoint_cpu_directory(args.workdir)
        for old in directory.glob("*.log"):  # an earlier run's
            old.unlink()
        env[ENDPOINT_CPU_ENV] = str(directory)
    load_before = os.getloadavg()
    print(f"fvr-study load harness: {os.cpu_count()} CPUs, load average {load_before[0]:.2f}")
    started = time.monotonic()
    try:
        source = prepare(args, env)
    except HarnessError as error:
        print(f"LOAD HARNESS FAILED: {error}", file=sys.stderr)
        return 2
    print(
        f"study {SLUG!r}: {args.per_method} match sets per method from {source} "
        f"(database, migrations and study in {time.monotonic() - started:.1f} s)"
    )
    stack = stack_build(args, env)
    summary: dict = {
        "cpus": os.cpu_count(),
        "load_before": load_before[0],
        "images": source,
        "javascript": args.javascript,
        "app_server_count": args.app_servers,
    }
    broken: list[str] = []
    try:
        stack_start(args, stack, summary)
        results = phases_run(args, stack, summary, broken)
    except HarnessError as error:
        print(f"LOAD HARNESS FAILED: {error}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
    return finish(args, stack, results, summary, broken)


def access_log_check(front: Nginx, pids: list[str], broken: list[str]) -> str:
    """The proxy's access log holds no Prolific ID of any participant who arrived."""
    text = front.access_log.read_text() if front.access_log.exists() else ""
    requests = text.count("\n")
    leaked = [pid for pid in pids if pid in text]
    if not requests:
        broken.append(f"nginx wrote no access log at {front.access_log}")
    if leaked:
        broken.append(f"Prolific IDs in the nginx access log: {len(leaked)}, e.g. {leaked[0]}")
    return f"{requests} requests logged, Prolific IDs in it: {len(leaked)}"
