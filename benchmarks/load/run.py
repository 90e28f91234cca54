"""Load harness: gunicorn on a fresh PostgreSQL database, simulated participants, nothing lost.

    .venv/bin/python -m benchmarks.load --users 200 --spawn-rate 50 --minutes 10 \
        [--burst 800] [--faults]

Creates (drops first) the database named by --database-url, migrates it, builds a demo study
(real photos from --faces or FVR_FACE_DATA/lfw when present, generated images otherwise),
starts gunicorn with production settings over plain HTTP on loopback, then runs locust
headless (`benchmarks/load/locustfile.py`): first, with --burst N, N arrivals released at once
(entry to question 1); then --users participants taking the full flow for --minutes, with
--faults injecting gunicorn reloads, a killed worker, a PostgreSQL restart and a full app
restart. Prints requests/s and p50/p95/p99 per endpoint, errors, and the "nothing lost" checks
(`benchmarks/load/invariants.py`); exits 1 when an invariant breaks or, without --faults, when
any request failed. See docs/load.md.
"""

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.load.cpu import CpuMeter, cpu_line
from benchmarks.load.server import (
    REPO,
    Gunicorn,
    HarnessError,
    Nginx,
    database_recreate,
    free_port,
    postgres_restart,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fvr_load"
# When each fault hits, as a share of the sustained run.
FAULTS = [
    (0.15, "gunicorn HUP"),
    (0.25, "gunicorn HUP"),
    (0.40, "SIGKILL one worker"),
    (0.55, "PostgreSQL fast restart"),
    (0.70, "full app restart"),
]
# The targets for a sustained run (2 cores, everything on one machine).
TARGETS = [
    # (users up to, pages p95 ms, pages p99 ms or None)
    (200, 100, 250),
    (300, 750, None),
]
TARGET_IMAGE_P95_MS = 50
SLUG = "load"


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
    args = parser.parse_args(argv)
    if args.minutes <= 0 and not args.burst:
        parser.error("nothing to run: give --minutes > 0, --burst N, or both")
    if args.worker_class == "sync" and args.proxy != "nginx":
        parser.error("--worker-class sync needs --proxy nginx (sync workers must not face clients)")
    if args.faults and args.minutes <= 0:
        parser.error("--faults needs a sustained run (--minutes > 0)")
    return args


def generated_faces(dest: Path, identities: int = 60, photos: int = 2) -> Path:
    """Stand-in photos (an identity-per-folder tree of drawn images) when no real ones exist."""
    from PIL import Image, ImageDraw

    rng = random.Random(7)
    for i in range(identities):
        folder = dest / f"person_{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(photos):
            image = Image.new("RGB", (250, 250), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            for _ in range(12):
                x, y = rng.randrange(200), rng.randrange(200)
                colour = tuple(rng.randrange(256) for _ in range(3))
                draw.ellipse((x, y, x + rng.randrange(20, 80), y + rng.randrange(20, 80)), colour)
            draw.text((10, 10), f"{i}/{j}", fill=(255, 255, 255))
            image.save(folder / f"{j}.jpg", quality=90)
    return dest


def faces_root(args: argparse.Namespace) -> tuple[Path, str]:
    if args.faces:
        return args.faces, "given photos"
    lfw = Path(os.environ.get("FVR_FACE_DATA", "") or "/nonexistent") / "lfw"
    if lfw.is_dir():
        return lfw, "real photos (LFW)"
    return generated_faces(args.workdir / "faces"), "generated images"


def prepare(args: argparse.Namespace, env: dict[str, str]) -> str:
    """Fresh database, migrations, static files, and an open demo study; return its source."""
    for name in ("media", "static", "faces"):
        shutil.rmtree(args.workdir / name, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    database_recreate(args.database_url)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from reconstruction.studies.demo import demo_study_create

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    root, source = faces_root(args)
    demo_study_create(faces_root=root, slug=SLUG, per_method=args.per_method, seed=1)
    return source


def load_run(
    args: argparse.Namespace, server: Gunicorn, *, phase: str, seconds: float, burst: int = 0
) -> tuple[dict, list[dict]]:
    """Run the load generator (a separate locust process); inject faults if asked."""
    out = args.workdir / f"{phase}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.load.loadgen",
        f"--host={args.front_url or server.url}",
        f"--slug={SLUG}",
        f"--run-tag={phase[0]}{os.getpid()}",
        f"--users={args.users}",
        f"--spawn-rate={args.spawn_rate}",
        f"--seconds={seconds}",
        f"--think={args.think}",
        f"--burst={burst}",
        f"--javascript={int(args.javascript)}",
        f"--out={out}",
    ]
    faults: list[dict] = []
    with (args.workdir / f"{phase}.log").open("w") as log:
        meter = CpuMeter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        if args.faults and not burst:
            for share, fault in FAULTS:
                time.sleep(max(0.0, started + share * seconds - time.monotonic()))
                at = time.monotonic() - started
                if fault == "PostgreSQL fast restart" and not args.pg_cluster:
                    faults.append({"fault": fault, "skipped": "no --pg-cluster"})
                    print(f"  fault at {at:5.1f} s: {fault} skipped (no --pg-cluster given)")
                    continue
                took = fault_inject(fault, server, args)
                faults.append({"fault": fault, "at_s": round(at, 1), "recovered_s": round(took, 2)})
                print(f"  fault at {at:5.1f} s: {fault} (serving again after {took:.2f} s)")
                meter.sample()  # before a restart replaces processes
        while True:
            try:
                returncode = process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                meter.sample()
    if returncode != 0 or not out.exists():
        raise HarnessError(f"the load generator failed ({returncode}); see {log.name}")
    return {**json.loads(out.read_text()), "cpu": meter.stop()}, faults


def fault_inject(fault: str, server: Gunicorn, args: argparse.Namespace) -> float:
    if fault == "gunicorn HUP":
        return server.hup()
    if fault == "SIGKILL one worker":
        return server.kill_worker()
    if fault == "PostgreSQL fast restart":
        return postgres_restart(args.pg_cluster) + server.wait_ready(timeout=60)
    if fault == "full app restart":
        return server.restart()
    raise ValueError(fault)


def image_server(server: Gunicorn, front: Nginx | None) -> str:
    """Who answers an image request: nginx, MediaFiles (before Django) or Django itself."""
    from config.wsgi import MEDIA_CACHE_CONTROL
    from survey.models import MatchSet

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


def endpoint_table(result: dict) -> list[str]:
    lines = [
        f"  {'endpoint':<20}{'requests':>9}{'fails':>7}{'req/s':>8}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    ]
    rows = [*result["endpoints"].items(), ("pages (no images)", result["pages"])]
    rows.append(("ALL", result["total"]))
    for name, f in rows:
        lines.append(
            f"  {name:<20}{f['count']:>9}{f['failures']:>7}{f['rps']:>8.1f}"
            f"{f['p50']:>8}{f['p95']:>8}{f['p99']:>8}{f['max']:>8.0f}"
        )
    return lines


def phase_report(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['users']} users, {result['seconds']:.0f} s ==")
    print("\n".join(endpoint_table(result)))
    print(
        f"  errors (failed requests): {result['total']['failures']}; client retries: "
        f"{result['retries']}; flows abandoned: {len(result['abandoned'])}"
    )
    for error in sorted(result["errors"], key=lambda e: -e["count"])[:8]:
        print(f"    {error['count']:>5} × {error['name']}: {error['error'][:100]}")
    for abandoned in result["abandoned"][:5]:
        print(f"    abandoned {abandoned['pid']}: {abandoned['why'][:120]}")


def targets_report(result: dict, *, faults: bool) -> list[str]:
    """The issue's latency and error targets for this run: met or missed (never fatal)."""
    users, pages, images = result["users"], result["pages"], result["endpoints"].get("image")
    lines = []
    for most, p95, p99 in TARGETS:
        if users <= most:
            ok = pages["p95"] <= p95 and (p99 is None or pages["p99"] <= p99)
            limit = f"p95 ≤ {p95} ms" + (f", p99 ≤ {p99} ms" if p99 else "")
            got = f"p95 {pages['p95']} ms, p99 {pages['p99']} ms"
            lines.append(f"  pages {limit}: {got} — {'met' if ok else 'MISSED'}")
            break
    if images:
        ok = images["p95"] <= TARGET_IMAGE_P95_MS
        lines.append(
            f"  images p95 ≤ {TARGET_IMAGE_P95_MS} ms: {images['p95']} ms — "
            f"{'met' if ok else 'MISSED'}"
        )
    if not faults:
        failures = result["total"]["failures"]
        lines.append(f"  0 errors: {failures} — {'met' if failures == 0 else 'MISSED'}")
    return lines


def merged_log(results: list[dict]) -> dict:
    keys = ("entered", "acked", "in_doubt", "completed")
    return {key: [item for r in results for item in r[key]] for key in keys}


def burst_phase(
    args: argparse.Namespace, server: Gunicorn, summary: dict, broken: list[str]
) -> dict:
    """N arrivals at once: every one reaches question 1, no request fails, spread ≤ 1."""
    from benchmarks.load.invariants import spread_by_method
    from survey.models import Study

    burst, _ = load_run(args, server, phase="burst", seconds=120, burst=args.burst)
    phase_report(f"burst of {args.burst} simultaneous arrivals", burst)
    print(cpu_line(burst["cpu"]))
    spread = spread_by_method(Study.objects.get(slug=SLUG))
    print(f"  reached question 1: {len(burst['assigned'])}; spread by method {spread}")
    if burst["total"]["failures"]:
        broken.append(f"burst: {burst['total']['failures']} failed requests")
    if len(burst["assigned"]) != args.burst:
        broken.append(f"burst: {len(burst['assigned'])} of {args.burst} reached a question")
    if any(s > 1 for s in spread.values()):
        broken.append(f"burst: assignment spread above 1: {spread}")
    summary["burst"] = {**phase_summary(burst), "spread": spread}
    return burst


def sustained_phase(
    args: argparse.Namespace, server: Gunicorn, summary: dict, broken: list[str]
) -> dict:
    """Participants taking the full flow for --minutes, with faults if asked."""
    sustained, faults = load_run(args, server, phase="sustained", seconds=args.minutes * 60)
    phase_report(f"sustained{' with faults' if args.faults else ''}", sustained)
    print(cpu_line(sustained["cpu"]))
    print(f"  targets ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}):")
    print("\n".join(targets_report(sustained, faults=args.faults)))
    failures = sustained["total"]["failures"]
    if failures and not args.faults:
        broken.append(f"sustained: {failures} failed requests")
    if sustained["abandoned"]:
        broken.append(f"sustained: {len(sustained['abandoned'])} participants abandoned")
    summary["sustained"] = {**phase_summary(sustained), "faults": faults}
    return sustained


def open_files_raise() -> None:
    """Hundreds of simultaneous connections need more open files than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 10_000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65_536), hard))


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    open_files_raise()
    args.workdir = args.workdir.resolve()
    env = server_environment(database_url=args.database_url, workdir=args.workdir)
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
    server = Gunicorn(
        env=env,
        workdir=args.workdir,
        port=free_port(),
        workers=args.workers,
        threads=args.threads,
        worker_class=args.worker_class,
    )
    front = None
    if args.proxy == "nginx":
        server.env["FVR_SERVE_MEDIA_WHITENOISE"] = "0"  # nginx serves media; gunicorn never does
        # As deploy/fvr-study.env: nginx on loopback is the proxy whose X-Forwarded-For is read.
        server.env["FVR_TRUSTED_PROXIES"] = "127.0.0.1"
        front = Nginx(
            workdir=args.workdir,
            port=free_port(),
            upstream=f"127.0.0.1:{server.port}",
            media_root=Path(env["DJANGO_MEDIA_ROOT"]),
            static_root=Path(env["DJANGO_STATIC_ROOT"]),
        )
    args.front_url = front.url if front else None
    results: list[dict] = []
    summary: dict = {
        "cpus": os.cpu_count(),
        "load_before": load_before[0],
        "images": source,
        "javascript": args.javascript,
    }
    broken: list[str] = []
    try:
        server.start()
        threads = f" × {args.threads} threads" if args.worker_class == "gthread" else ""
        print(f"gunicorn: {args.workers} {args.worker_class} workers{threads} at {server.url}")
        if front is not None:
            front.start()
            print(f"nginx in front at {front.url} (deploy/nginx.conf)")
        way = "the page's script (one request per question)" if args.javascript else "no script"
        print(f"participants answer as browsers with {way}")
        summary["images_served_by"] = image_server(server, front)
        print(f"images served by {summary['images_served_by']}")
        if args.burst:
            results.append(burst_phase(args, server, summary, broken))
        if args.minutes > 0:
            results.append(sustained_phase(args, server, summary, broken))
    except HarnessError as error:
        print(f"LOAD HARNESS FAILED: {error}", file=sys.stderr)
        return 2
    finally:
        server.stop()
        if front is not None:
            front.stop()
    from django.db import connections

    from benchmarks.load.invariants import invariants_check

    connections.close_all()  # a PostgreSQL restart may have cut this process's connection
    log = merged_log(results)
    found = invariants_check(slug=SLUG, log=log)
    broken += found.broken
    if front is not None:
        found.figures["nginx access log"] = access_log_check(front, log["entered"], broken)
    load_after = os.getloadavg()
    print("\n== nothing lost ==")
    for name, value in found.figures.items():
        print(f"  {name}: {value}")
    print(f"  load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
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


def phase_summary(result: dict) -> dict:
    """The figures of one phase worth keeping in the JSON summary."""
    return {
        "pages": result["pages"],
        "users": result["users"],
        "seconds": round(result["seconds"], 1),
        "total": result["total"],
        "endpoints": result["endpoints"],
        "errors": result["errors"],
        "cpu_cores": result.get("cpu", {}),
        "retries": result["retries"],
        "abandoned": len(result["abandoned"]),
    }
