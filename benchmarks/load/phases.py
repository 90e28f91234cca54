"""A load phase: the load generator (a locust process) against the stack, faults, reports."""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.load.cpu import CpuMeter, cpu_line
from benchmarks.load.endpoint_cpu import at_share, cpu_table, endpoint_figures, phase_endpoints
from benchmarks.load.server import REPO, Gunicorn, HarnessError, Stack, postgres_restart
from benchmarks.load.study import SLUG

TAGS = itertools.count()  # run tags (Prolific IDs' prefix) unique across phases of one run

# When each fault hits, as a share of the sustained run.
FAULTS = [
    (0.15, "gunicorn HUP"),
    (0.25, "gunicorn HUP"),
    (0.40, "SIGKILL one worker"),
    (0.55, "PostgreSQL fast restart"),
    (0.70, "full app restart"),
]


def load_run(
    args: argparse.Namespace,
    stack: Stack,
    *,
    phase: str,
    seconds: float,
    burst: int = 0,
    users: int | None = None,
    extra: tuple[str, ...] = (),
    faults: bool = False,
) -> tuple[dict, list[dict]]:
    """Run the load generator (a separate locust process); inject faults if asked (into the
    first app server). The result carries the CPU by role over the whole phase: `cpu` (cores)
    and `cpu_seconds`."""
    out = args.workdir / f"{phase}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "benchmarks.load.loadgen",
        f"--host={stack.url}",
        f"--slug={SLUG}",
        f"--run-tag={phase[0]}{next(TAGS)}{os.getpid()}",
        f"--users={users or args.users}",
        f"--spawn-rate={args.spawn_rate}",
        f"--seconds={seconds}",
        f"--think={args.think}",
        f"--burst={burst}",
        f"--javascript={int(args.javascript)}",
        f"--stagger={args.stagger}",
        f"--out={out}",
        *extra,
    ]
    injected: list[dict] = []
    wall_start = time.time()
    with (args.workdir / f"{phase}.log").open("w") as log:
        meter = CpuMeter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if faults and not burst:
            injected = faults_on_schedule(args, stack.servers[0], meter, seconds)
        while True:
            try:
                returncode = process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                meter.sample()
    if returncode != 0 or not out.exists():
        raise HarnessError(f"the load generator failed ({returncode}); see {log.name}")
    cores = meter.stop()
    result = json.loads(out.read_text())
    result |= {"phase": phase, "cpu": cores, "cpu_seconds": meter.used}
    if args.cpu_by_endpoint:
        found = phase_endpoints(endpoint_cpu_directory(args.workdir), wall_start, time.time())
        result["cpu_by_endpoint"] = endpoint_figures(found)
    return result, injected


def endpoint_cpu_directory(workdir: Path) -> Path:
    """Where the app servers' workers write each request's CPU (--cpu-by-endpoint)."""
    directory = workdir / "endpoint-cpu"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


TARGET_IMAGE_P95_MS = 50


def faults_on_schedule(
    args: argparse.Namespace, server: Gunicorn, meter: CpuMeter, seconds: float
) -> list[dict]:
    """Inject FAULTS into ``server`` at their shares of a ``seconds``-long phase just begun."""
    injected: list[dict] = []
    started = time.monotonic()
    for share, fault in FAULTS:
        time.sleep(max(0.0, started + share * seconds - time.monotonic()))
        at = time.monotonic() - started
        if fault == "PostgreSQL fast restart" and not args.pg_cluster:
            injected.append({"fault": fault, "skipped": "no --pg-cluster"})
            print(f"  fault at {at:5.1f} s: {fault} skipped (no --pg-cluster given)")
            continue
        took = fault_inject(fault, server, args)
        injected.append({"fault": fault, "at_s": round(at, 1), "recovered_s": round(took, 2)})
        print(f"  fault at {at:5.1f} s: {fault} (serving again after {took:.2f} s)")
        meter.sample()  # before a restart replaces processes
    return injected


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
    if "cpu_by_endpoint" in result:
        app_cpu_s = result.get("cpu_seconds", {}).get("app", 0.0)
        print("\n".join(cpu_table(result["cpu_by_endpoint"], app_cpu_s)))


def merged_log(results: list[dict]) -> dict:
    keys = ("entered", "acked", "in_doubt", "completed")
    return {key: [item for r in results for item in r[key]] for key in keys}


BURST_TARGET_P95_S = 3.0  # issue 19: time to the first question, p95, burst of 800


def burst_time_to_question(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and max of the burst arrivals' seconds from release to question 1."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {"p50": at_share(ordered, 0.5), "p95": at_share(ordered, 0.95), "max": ordered[-1]}


def burst_phase(args: argparse.Namespace, stack: Stack, summary: dict, broken: list[str]) -> dict:
    """N arrivals at once: every one reaches question 1, no request fails, spread ≤ 1."""
    from benchmarks.load.invariants import spread_by_method
    from survey.models import Study

    burst, _ = load_run(args, stack, phase="burst", seconds=120, burst=args.burst)
    phase_report(f"burst of {args.burst} simultaneous arrivals", burst)
    print(cpu_line(burst["cpu"]))
    spread = spread_by_method(Study.objects.get(slug=SLUG))
    print(f"  reached question 1: {len(burst['assigned'])}; spread by method {spread}")
    to_question = burst_time_to_question(burst.get("to_question", []))
    if to_question:
        print(
            f"  time to question 1 (release to the instructions POST's answer, including three "
            f"reading pauses of ≈ 0.5 s): p50 {to_question['p50']:.1f} s, p95 "
            f"{to_question['p95']:.1f} s, max {to_question['max']:.1f} s "
            f"(target p95 ≤ {BURST_TARGET_P95_S:.0f} s: "
            f"{'met' if to_question['p95'] <= BURST_TARGET_P95_S else 'MISSED'})"
        )
    if burst["total"]["failures"]:
        broken.append(f"burst: {burst['total']['failures']} failed requests")
    if len(burst["assigned"]) != args.burst:
        broken.append(f"burst: {len(burst['assigned'])} of {args.burst} reached a question")
    if any(s > 1 for s in spread.values()):
        broken.append(f"burst: assignment spread above 1: {spread}")
    summary["burst"] = {**phase_summary(burst), "spread": spread, "to_question_s": to_question}
    return burst


def sustained_phase(
    args: argparse.Namespace, stack: Stack, summary: dict, broken: list[str]
) -> dict:
    """Participants taking the full flow for --minutes, with faults if asked."""
    sustained, faults = load_run(
        args, stack, phase="sustained", seconds=args.minutes * 60, faults=args.faults
    )
    phase_report(f"sustained{' with faults' if args.faults else ''}", sustained)
    print(cpu_line(sustained["cpu"]))
    images = sustained["endpoints"].get("image")
    if images:
        ok = images["p95"] <= TARGET_IMAGE_P95_MS
        verdict = "met" if ok else "MISSED"
        print(f"  target: images p95 ≤ {TARGET_IMAGE_P95_MS} ms: {images['p95']} ms — {verdict}")
    failures = sustained["total"]["failures"]
    if failures and not args.faults:
        broken.append(f"sustained: {failures} failed requests")
    if sustained["abandoned"]:
        broken.append(f"sustained: {len(sustained['abandoned'])} participants abandoned")
    summary["sustained"] = {**phase_summary(sustained), "faults": faults}
    return sustained


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
        "cpu_seconds": result.get("cpu_seconds", {}),
        "answers": len(result["acked"]),
        "retries": result["retries"],
        "abandoned": len(result["abandoned"]),
        **({"cpu_by_endpoint": result["cpu_by_endpoint"]} if "cpu_by_endpoint" in result else {}),
    }
