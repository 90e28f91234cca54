"""Run the simulated participants with locust's Python API and write stats + client log as JSON.

A separate process (`python -m benchmarks.load.loadgen`), because locust patches the standard
library with gevent on import; `benchmarks.load.run` starts it and reads the JSON.
"""

import argparse
import json
import time
from pathlib import Path

import gevent
from locust.env import Environment
from locust.stats import StatsEntry

from benchmarks.load import locustfile

PERCENTILES = (0.5, 0.95, 0.99)


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
    user = locustfile.Participant
    user.host = args.host
    env = Environment(user_classes=[user])
    runner = env.create_local_runner()
    users = args.burst or args.users
    started = time.monotonic()
    runner.start(users, spawn_rate=args.burst or args.spawn_rate)
    if args.burst:
        # Every burst user stops after arriving; wait for the last one (bounded).
        gevent.sleep(1)
        while runner.user_count and time.monotonic() - started < args.seconds:
            gevent.sleep(0.2)
    else:
        gevent.sleep(args.seconds)
    locustfile.STOP.set()
    stop_at = time.monotonic()
    # Users finish the request in hand (with its retries), so nothing is left in doubt.
    while runner.user_count and time.monotonic() - stop_at < args.grace:
        gevent.sleep(0.2)
    forced = runner.user_count
    ended = time.monotonic()
    runner.quit()
    seconds = ended - started
    stats = env.stats
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
        "users": users,
        "forced_stops": forced,
        "total": entry_figures(stats.total, seconds),
        "pages": entry_figures(pages, seconds),
        "endpoints": dict(sorted(by_name.items())),
        "errors": [
            {"name": e.name, "error": str(e.error), "count": e.occurrences}
            for e in stats.errors.values()
        ],
        "entered": log.entered,
        "assigned": log.assigned,
        "acked": log.acked,
        "in_doubt": list(log.pending.values()),
        "completed": log.completed,
        "abandoned": log.abandoned,
        "retries": log.retries,
    }


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
    parser.add_argument("--grace", type=float, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(json.dumps(run(args)))


if __name__ == "__main__":
    main()
