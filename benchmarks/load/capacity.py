"""Capacity that can be planned (issue 19): the efficiency ratio, the saturation rate, and runs at
fractions of it.

- Efficiency: the app's (and PostgreSQL's) CPU per question of the flow, every request of it
  included, against the same figure for the minimal answer view (benchmarks/load/minimal.py)
  on the same stack. Target: the flow's app CPU per question ≤ 2 × the minimal view's.
- Saturation: the load generator steps the users up (benchmarks/load/loadgen.py `steps_run`);
  the saturation rate is the highest throughput (questions/s) any step reached.
- Runs at fractions of that rate (or of --rate): a planned load (≤ 1: pages p95 ≤ 100 ms,
  p99 ≤ 250 ms, 0 errors) and an overload (> 1: 0 server errors, latency growth reported).
"""

import argparse

from benchmarks.load.cpu import cpu_line
from benchmarks.load.endpoint_cpu import ANSWER, MINIMAL
from benchmarks.load.phases import load_run, phase_report, phase_summary
from benchmarks.load.server import Stack

TARGET_RATIO = 2.0  # the flow's app CPU per question ≤ this × the minimal view's
PLANNED_P95_MS, PLANNED_P99_MS = 100, 250  # pages, at a planned fraction (≤ 1) of saturation


def ms_per(cpu_seconds: dict[str, float], role: str, count: int) -> float:
    """Milliseconds of CPU of ``role`` per item (0 when there were none)."""
    return round(1000 * cpu_seconds.get(role, 0.0) / count, 2) if count else 0.0


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def efficiency_phase(
    args: argparse.Namespace, stack: Stack, flow: dict, summary: dict, broken: list[str]
) -> dict:
    """Minimal users for --efficiency-seconds (measured once all have entered); the flow's CPU
    per question (``flow``: a whole phase, arrival pages included) against theirs."""
    result, _ = load_run(
        args, stack, phase="minimal", seconds=args.efficiency_seconds, extra=("--minimal=1",)
    )
    phase_report("efficiency baseline: the minimal answer view", result)
    window = result["window"]
    print(cpu_line(window["cpu"]))
    answers, minimal = len(flow["acked"]), window["minimal_answers"]
    figures = {
        "flow_phase": flow["phase"],
        "flow_answers": answers,
        "app_ms_per_question": ms_per(flow["cpu_seconds"], "app", answers),
        "database_ms_per_question": ms_per(flow["cpu_seconds"], "database", answers),
        "minimal_answers": minimal,
        "minimal_app_ms": ms_per(window["cpu_seconds"], "app", minimal),
        "minimal_database_ms": ms_per(window["cpu_seconds"], "database", minimal),
    }
    base = figures["minimal_app_ms"]
    ratio = round(figures["app_ms_per_question"] / base, 2) if base else float("inf")
    figures |= {"ratio": ratio, "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO}
    print(
        f"efficiency: app CPU per question {figures['app_ms_per_question']:.1f} ms "
        f"(database {figures['database_ms_per_question']:.1f} ms); minimal answer view "
        f"{base:.1f} ms (database {figures['minimal_database_ms']:.1f} ms); ratio {ratio:.2f} "
        f"(target ≤ {TARGET_RATIO:g}) — {verdict(ratio <= TARGET_RATIO)}"
    )
    print(f"  (flow: the {flow['phase']} phase, {answers} answers; minimal: {minimal} answers)")
    if "cpu_by_endpoint" in flow and "cpu_by_endpoint" in result:
        figures["in_django"] = in_django = efficiency_split(
            flow["cpu_by_endpoint"], result["cpu_by_endpoint"], answers
        )
        print(
            f"  in Django (middleware and view, --cpu-by-endpoint): an answer "
            f"{in_django['answer_ms']:.2f} ms, the minimal view {in_django['minimal_ms']:.2f} ms "
            f"(ratio {in_django['answer_ratio']:.2f}); the flow's other requests "
            f"{in_django['other_ms_per_question']:.2f} ms per question"
        )
    if result["total"]["failures"] and not args.faults:
        broken.append(f"efficiency baseline: {result['total']['failures']} failed requests")
    if result["abandoned"] or not minimal:
        broken.append(f"efficiency baseline: {len(result['abandoned'])} abandoned, {minimal} posts")
    summary["efficiency"] = {**figures, "minimal_phase": phase_summary(result), "window": window}
    return result


def efficiency_split(flow: dict[str, dict], minimal: dict[str, dict], answers: int) -> dict:
    """The flow's CPU in Django split into its answers (the page's script's, the kind the
    minimal view stands for) and everything else per question, against the minimal view's."""
    answer = flow.get(ANSWER, {"count": 0, "mean_ms": 0.0, "total_s": 0.0})
    minimal_ms = minimal.get(MINIMAL, {}).get("mean_ms", 0.0)
    other_s = sum(f["total_s"] for name, f in flow.items() if name != ANSWER)
    return {
        "answer_ms": answer["mean_ms"],
        "answers_timed": answer["count"],
        "minimal_ms": minimal_ms,
        "answer_ratio": round(answer["mean_ms"] / minimal_ms, 2) if minimal_ms else float("inf"),
        "other_ms_per_question": round(1000 * other_s / answers, 3) if answers else 0.0,
    }


def saturation_phase(
    args: argparse.Namespace, stack: Stack, summary: dict, broken: list[str]
) -> tuple[dict, float, float]:
    """The users stepped up until throughput stops growing; return the phase's result, the
    saturation rate (questions/s) and the seconds per question per user at the first step."""
    first, step, most = args.saturate
    result, _ = load_run(
        args,
        stack,
        phase="saturate",
        seconds=args.step_seconds * most,
        users=first,
        extra=(f"--steps={first},{step},{most}", f"--step-seconds={args.step_seconds}"),
    )
    steps = result["steps"]
    print(f"\n== saturation search: {first} users, then +{step} every {args.step_seconds:g} s ==")
    for figures in steps:
        pages, cores = figures["pages"], figures["cpu"]
        print(
            f"  step {figures['users']:>4} users: {figures['rate']:7.1f} questions/s, pages "
            f"p50/p95/p99 {pages['p50']}/{pages['p95']}/{pages['p99']} ms, failures "
            f"{figures['failures']}, CPU app {cores['app']:.2f} database {cores['database']:.2f}"
            + (f" — stop: {figures['stop']}" if "stop" in figures else "")
        )
    best = max(steps, key=lambda figures: figures["rate"])
    cycle = steps[0]["users"] / steps[0]["rate"] if steps[0]["rate"] else args.think + 0.1
    print(
        f"saturation: {best['rate']:.1f} questions/s (at {best['users']} users; the highest "
        f"step; a step adding < 5 % or with pages p95 > 1 s ends the search); "
        f"{cycle:.2f} s per question per user at {steps[0]['users']} users"
    )
    if result["abandoned"]:
        broken.append(f"saturation search: {len(result['abandoned'])} participants abandoned")
    summary["saturation"] = {
        "rate": best["rate"],
        "users": best["users"],
        "seconds_per_question_per_user": round(cycle, 3),
        "steps": steps,
        "phase": phase_summary(result),
    }
    return result, best["rate"], cycle


def error_counts(result: dict) -> dict[str, int]:
    """Failed requests: all, answered 5xx, and broken connections (no answer at all)."""
    errors = result["errors"]
    return {
        "errors": result["total"]["failures"],
        "server_errors": sum(e["count"] for e in errors if "HTTP 5" in e["error"]),
        "connection_errors": sum(e["count"] for e in errors if "connection error" in e["error"]),
    }


def run_figures(result: dict, fraction: float, rate: float) -> dict:
    """One run at a fraction of the saturation rate: targets and what it achieved."""
    pages = result["pages"]
    counts = error_counts(result)
    figures = {
        "fraction": fraction,
        "target_rate": round(fraction * rate, 2),
        "users": result["users"],
        # Steady: from the end of the users' ramp (loadgen's window) to the end of the run.
        "rate": result["window"]["rate"],
        "phase_rate": round(len(result["acked"]) / result["seconds"], 2),
        "pages": {key: pages[key] for key in ("p50", "p95", "p99")},
        **counts,
        "cpu": result["cpu"],
    }
    if fraction <= 1:
        ok = pages["p95"] <= PLANNED_P95_MS and pages["p99"] <= PLANNED_P99_MS
        figures["met"] = ok and counts["errors"] == 0
        figures["targets"] = f"pages p95 ≤ {PLANNED_P95_MS} ms, p99 ≤ {PLANNED_P99_MS} ms, 0 errors"
    else:
        figures["met"] = counts["server_errors"] + counts["connection_errors"] == 0
        figures["targets"] = "0 server errors (5xx or broken connections)"
    return figures


def fraction_runs(
    args: argparse.Namespace,
    stack: Stack,
    rate: float,
    cycle: float,
    summary: dict,
    broken: list[str],
) -> list[dict]:
    """The flow at each --at fraction of ``rate`` for its minutes; users = fraction × rate ×
    seconds per question per user (closed loop: users set the rate)."""
    results, runs = [], []
    for fraction, minutes in args.at:
        users = max(1, round(fraction * rate * cycle))
        name = f"at{round(fraction * 100)}"
        result, _ = load_run(args, stack, phase=name, seconds=minutes * 60, users=users)
        phase_report(f"{fraction:.0%} of {rate:.1f} questions/s for {minutes:g} min", result)
        figures = run_figures(result, fraction, rate)
        baseline = next((run for run in runs if run["fraction"] <= 1), None)
        if fraction > 1 and baseline is not None:
            figures["growth"] = {
                key: round(figures["pages"][key] / max(baseline["pages"][key], 1), 2)
                for key in ("p95", "p99")
            }
        fraction_report(figures)
        if result["abandoned"]:
            broken.append(f"{name}: {len(result['abandoned'])} participants abandoned")
        if fraction <= 1 and figures["errors"] and not args.faults:
            broken.append(f"{name}: {figures['errors']} failed requests")
        runs.append({**figures, "minutes": minutes, "phase": phase_summary(result)})
        results.append(result)
    summary["capacity_runs"] = runs
    return results


def fraction_report(figures: dict) -> None:
    pages = figures["pages"]
    print(
        f"at {figures['fraction']:.0%}: target {figures['target_rate']:.1f} questions/s "
        f"({figures['users']} users), achieved {figures['rate']:.1f}; pages p50/p95/p99 "
        f"{pages['p50']}/{pages['p95']}/{pages['p99']} ms; errors {figures['errors']} (server "
        f"5xx {figures['server_errors']}, connection {figures['connection_errors']})"
    )
    print(cpu_line(figures["cpu"]))
    if "growth" in figures:
        growth = figures["growth"]
        print(
            f"  latency growth against the planned run: p95 × {growth['p95']:.2f}, "
            f"p99 × {growth['p99']:.2f}"
        )
    print(f"  targets ({figures['targets']}): {verdict(figures['met'])}")
