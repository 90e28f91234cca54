"""Run the simulated participants with locust's Python API and write stats + client log as JSON.

A separate process (`python -m benchmarks.load.loadgen`), because locust patches the standard
library with gevent on import; `benchmarks.load.run` starts it and reads the JSON.
"""

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import gevent
from locust.env import Environment
from locust.stats import StatsEntry

from benchmarks.load import locustfile
from benchmarks.load.cpu import CpuMeter

PERCENTILES = (0.5, 0.95, 0.99)
# The saturation search stops at a step that adds less than this to the best throughput so far,
# or whose pages' p95 passes SATURATED_P95_MS.
SATURATED_GAIN = 0.05
SATURATED_P95_MS = 1000


def percentiles(times: list[float]) -> dict[str, float]:
    """p50/p95/p99 (ms, nearest rank) of response times; zeros when there are none."""
    ordered = sorted(times)
    figures = {}
    for p in PERCENTILES:
        index = min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))
        figures[f"p{round(p * 100)}"] = round(ordered[index]) if ordered else 0
    return figures


@dataclass
class Window:
    """A stretch of a run measured on its own: answers, pages' latency, failures, CPU by role."""

    users: int
    pages: list[float] = field(default_factory=list)  # response times (ms), not images/static
    failures: int = 0
    acked: int = field(default_factory=lambda: len(locustfile.LOG.acked))
    minimal: int = field(default_factory=lambda: locustfile.LOG.minimal)
    meter: CpuMeter = field(default_factory=CpuMeter)

    def record(self, name: str, response_time: float, failed: bool) -> None:
        if name not in ("image", "static"):
            self.pages.append(response_time)
        self.failures += failed

    def close(self) -> dict:
        """The window's figures: answers/s (and minimal answers/s), pages, CPU seconds by role."""
        cores = self.meter.stop()
        seconds = self.meter.seconds
        acked = len(locustfile.LOG.acked) - self.acked
        minimal = locustfile.LOG.minimal - self.minimal
        return {
            "users": self.users,
            "seconds": round(seconds, 1),
            "answers": acked,
            "rate": round(acked / seconds, 2),
            "minimal_answers": minimal,
            "pages": {"count": len(self.pages), **percentiles(self.pages)},
            "failures": self.failures,
            "cpu": cores,
            "cpu_seconds": self.meter.used,
        }


class Windows:
    """Feeds locust's request events to the window being measured, if any."""

    current: Window | None = None

    def on_request(self, name: str, response_time: float, exception: object, **_: object) -> None:
        if self.current is not None:
            self.current.record(name, response_time, exception is not None)

    def measure(self, users: int, seconds: float) -> dict:
        self.current = Window(users=users)
        gevent.sleep(seconds)
        window, self.current = self.current, None
        return window.close()


def entry_figures(entry: object, seconds: float) -> dict:
    """Count, failures, requests/s and latency percentiles (ms) of one locust stats entry."""
    figures = {
        "count": entry.num_requests,
        "failures": entry.num_failures,
        "rps": entry.num_requests / seconds if seconds else 0.0,
        "max": entry.max_response_time or 0,
    }
    for p in PERCENTILES:
        key = f"p{round(p * 100)}"
        figures[key] = entry.get_response_time_percentile(p) if entry.num_requests else 0
    return figures


def run(args: argparse.Namespace) -> dict:
    """Spawn the users, run for the given time, stop them gracefully, return the figures."""
    plan = locustfile.PLAN
    plan.slug, plan.run_tag, plan.think_seconds = args.slug, args.run_tag, args.think
    plan.burst, plan.javascript = args.burst, bool(args.javascript)
    plan.minimal = bool(args.minimal)
    plan.stagger_seconds = args.stagger
    user = locustfile.Participant
    user.host = args.host
    env = Environment(user_classes=[user])
    windows = Windows()
    env.events.request.add_listener(windows.on_request)
    runner = env.create_local_runner()
    started = time.monotonic()
    users, measured = drive(runner, windows, args, started)
    locustfile.STOP.set()
    stop_at = time.monotonic()
    # Users finish the request in hand (with its retries), so nothing is left in doubt.
    while runner.user_count and time.monotonic() - stop_at < args.grace:
        gevent.sleep(0.2)
    forced = runner.user_count
    ended = time.monotonic()
    runner.quit()
    return {
        **figures(env.stats, ended - started),
        "users": users,
        "forced_stops": forced,
        **measured,
    }


def drive(
    runner: object, windows: "Windows", args: argparse.Namespace, started: float
) -> tuple[int, dict]:
    """Start the users and keep them going until the run should end; return the users and
    what was measured along the way (saturation steps, a steady window)."""
    users = args.burst or args.users
    if args.steps:
        steps = steps_run(runner, windows, args)
        return runner.user_count, {"steps": steps}
    runner.start(users, spawn_rate=args.burst or args.spawn_rate)
    if args.burst:
        # Every burst user stops after arriving; wait for the last one (bounded).
        gevent.sleep(1)
        while runner.user_count and time.monotonic() - started < args.seconds:
            gevent.sleep(0.2)
        return users, {}
    if args.minimal:
        return users, {"window": minimal_window(windows, args, started)}
    # The steady part (after the users' ramp and first arrivals), measured on its own.
    settle = min(10.0, args.seconds / 3)
    gevent.sleep(settle)
    return users, {"window": windows.measure(users, args.seconds - settle)}


def figures(stats: object, seconds: float) -> dict:
    """Per endpoint, pages, all requests, errors, and the clients' log."""
    by_name = {
        name: entry_figures(entry, seconds) for (name, _method), entry in stats.entries.items()
    }
    # Every page and form post together (not images or static files): the targets' "latency".
    pages = StatsEntry(stats, "pages", "")
    for (name, _method), entry in stats.entries.items():
        if name not in ("image", "static"):
            pages.extend(entry)
    log = locustfile.LOG
    return {
        "seconds": seconds,
        "total": entry_figures(stats.total, seconds),
        "pages": entry_figures(pages, seconds),
        "endpoints": dict(sorted(by_name.items())),
        "errors": [
            {"name": e.name, "error": str(e.error), "count": e.occurrences}
            for e in stats.errors.values()
        ],
        "entered": log.entered,
        "assigned": log.assigned,
        "to_question": log.to_question,
        "acked": log.acked,
        "in_doubt": list(log.pending.values()),
        "completed": log.completed,
        "abandoned": log.abandoned,
        "retries": log.retries,
    }


def minimal_window(windows: Windows, args: argparse.Namespace, started: float) -> dict:
    """Minimal users: measured from the moment all have entered (their entry is not counted)."""
    while locustfile.LOG.ready < args.users and time.monotonic() - started < args.seconds / 2:
        gevent.sleep(0.1)
    return windows.measure(args.users, max(1.0, args.seconds - (time.monotonic() - started)))


def steps_run(runner: object, windows: Windows, args: argparse.Namespace) -> list[dict]:
    """The saturation search: users stepped up from START by STEP (at most MAX steps), each
    held --step-seconds and measured after a settling third; stop at the first step that adds
    < 5 % to the best throughput so far or whose pages' p95 passes 1 s."""
    first, step, most = (int(part) for part in args.steps.split(","))
    settle = min(10.0, args.step_seconds / 3)
    steps: list[dict] = []
    best = 0.0
    for users in range(first, first + step * most, step):
        runner.start(users, spawn_rate=args.spawn_rate)
        gevent.sleep(settle)
        figures = windows.measure(users, args.step_seconds - settle)
        steps.append(figures)
        print(f"step: {json.dumps(figures)}", flush=True)
        if figures["rate"] < best * (1 + SATURATED_GAIN):
            figures["stop"] = f"adds < {SATURATED_GAIN:.0%} to the best so far"
            break
        best = figures["rate"]
        if figures["pages"]["p95"] > SATURATED_P95_MS:
            figures["stop"] = f"pages p95 above {SATURATED_P95_MS} ms"
            break
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--slug", required=True)
    parser.add_argument("--run-tag", required=True)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--think", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--javascript", type=int, choices=(0, 1), default=1)
    parser.add_argument("--minimal", type=int, choices=(0, 1), default=0)
    parser.add_argument("--stagger", type=float, default=0.0)
    parser.add_argument("--steps", default="", help="START,STEP,MAX users: saturation search")
    parser.add_argument("--step-seconds", type=float, default=45)
    parser.add_argument("--grace", type=float, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(json.dumps(run(args)))


if __name__ == "__main__":
    main()
