"""Server CPU per request, by endpoint (`--cpu-by-endpoint`; harness code, never in the product).

The app's CPU by role (cpu.py) says what a phase cost the app servers in all; this says what
each kind of request cost inside Django: the worker thread's own CPU time (`time.thread_time`,
which the other threads and processes sharing the cores do not inflate) from the outermost
middleware in to the response out — every middleware and the view, not gunicorn's HTTP work or
Django's WSGI handler around them, which the harness gives as the rest of the app's CPU.

With the harness's option, `benchmarks.load.settings` puts `middleware` first and each worker
appends one tab-separated line per request (wall time, endpoint, CPU in µs) to
``$FVR_LOAD_ENDPOINT_CPU/<pid>.log``; `phase_endpoints` reads the lines of a phase's span of
wall time. The endpoint is the method and the URL's name (`survey:question`); an answer the page's
script posts and is answered in JSON is told apart from a plain form's (`POST survey:question
(JSON)`). The Prolific IDs in an entry's URL never reach the file: only the URL's name does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from django.http import HttpRequest, HttpResponse

ENV = "FVR_LOAD_ENDPOINT_CPU"
ANSWER = "POST survey:question (JSON)"
MINIMAL = "POST load_minimal_answer (JSON)"


def endpoint_name(request: HttpRequest, response: HttpResponse) -> str:
    """'METHOD url-name', '(JSON)' added to a POST answered in JSON; 'unresolved' without a
    URL name (a 404 before any view)."""
    match = getattr(request, "resolver_match", None)
    name = match.view_name if match is not None else "unresolved"
    json_reply = response.get("Content-Type", "").startswith("application/json")
    suffix = " (JSON)" if request.method == "POST" and json_reply else ""
    return f"{request.method} {name}{suffix}"


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """Time each request's thread CPU through the rest of the stack; append it to this worker's
    file (opened at its first request, after gunicorn has forked it)."""
    directory = Path(os.environ[ENV])
    files: dict[int, TextIO] = {}  # by process: one file per gunicorn worker
    lock = threading.Lock()  # the worker's threads write whole lines, one at a time

    def timed(request: HttpRequest) -> HttpResponse:
        started = time.thread_time_ns()
        response = get_response(request)
        used = time.thread_time_ns() - started
        line = f"{time.time():.3f}\t{endpoint_name(request, response)}\t{used // 1000}\n"
        pid = os.getpid()
        with lock:
            log = files.get(pid)
            if log is None:
                log = files[pid] = (directory / f"{pid}.log").open("a", buffering=1)
            log.write(line)
        return response

    return timed


def phase_endpoints(directory: Path, start: float, end: float) -> dict[str, list[float]]:
    """CPU milliseconds of each request whose response left between wall times ``start`` and
    ``end``, by endpoint."""
    found: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            try:
                at, name, micros = line.split("\t")
                when, cpu_ms = float(at), int(micros) / 1000
            except ValueError:  # a line a killed worker left half-written
                continue
            if start <= when <= end:
                found.setdefault(name, []).append(cpu_ms)
    return found


def at_share(ordered: list[float], share: float) -> float:
    """The value a ``share`` (0.5, 0.95) of the way through ``ordered`` (sorted, not empty)."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def endpoint_figures(found: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per endpoint: requests, mean / p50 / p90 CPU ms, and total CPU seconds."""
    figures = {}
    for name, times in found.items():
        ordered = sorted(times)
        total = sum(ordered)
        figures[name] = {
            "count": len(ordered),
            "mean_ms": round(total / len(ordered), 3),
            "p50_ms": round(at_share(ordered, 0.5), 3),
            "p90_ms": round(at_share(ordered, 0.9), 3),
            "total_s": round(total / 1000, 3),
        }
    return dict(sorted(figures.items(), key=lambda item: -item[1]["total_s"]))


def cpu_table(figures: dict[str, dict[str, float]], app_cpu_s: float) -> list[str]:
    """The per-endpoint lines, and what the app used outside the middleware per request."""
    lines = [
        f"  {'server CPU in Django, by endpoint':<40}{'requests':>9}{'mean ms':>9}"
        f"{'p50 ms':>8}{'p90 ms':>8}{'total s':>9}"
    ]
    for name, f in figures.items():
        lines.append(
            f"  {name:<40}{f['count']:>9}{f['mean_ms']:>9.2f}{f['p50_ms']:>8.2f}"
            f"{f['p90_ms']:>8.2f}{f['total_s']:>9.1f}"
        )
    requests = sum(f["count"] for f in figures.values())
    inside = sum(f["total_s"] for f in figures.values())
    if requests:
        outside = 1000 * max(0.0, app_cpu_s - inside) / requests
        lines.append(
            f"  the app's CPU outside the middleware (gunicorn, Django's handler, idle workers): "
            f"{outside:.2f} ms per request"
        )
    return lines
