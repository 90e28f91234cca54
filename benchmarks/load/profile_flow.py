"""Per-request cost of the participant flow, in process: milliseconds and SQL queries.

Walks ``--participants`` simulated participants through the whole flow with Django's test
client (no HTTP, no concurrency) against the database a load run left behind (default
``fvr_load``), under the load run's production settings, and prints per endpoint the median
and p90 wall time, the median CPU time of this process (Django's share, without PostgreSQL's;
steadier than wall time on a busy machine) and the number of SQL queries. This is the CPU
budget the load targets divide: at 200 participants answering every 2 s, pages arrive at
≈ 200/s on 2 cores.

    .venv/bin/python -m benchmarks.load.profile_flow [--participants 20] [--slug load]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

from benchmarks.load.run import DEFAULT_DATABASE_URL
from benchmarks.load.server import server_environment

TOKEN_RE = re.compile(r'name="question" value="([0-9a-f-]{36})"')
ATTENTION_RE = re.compile(r"select <strong>photo (\d+)</strong> only")
CONFIDENCE_RE = re.compile(r'name="confidence" value="(\d)"[^>]*> ([^<]+)</label>')
TOLD_RE = re.compile(r"answer\s*<strong>“(.+?)”</strong>", re.S)
PHOTO_RE = re.compile(r'id="cand-(\d+)" name="selected" value="(\d+)"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--slug", default="load")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--workdir", type=Path, default=Path("var/load"), help="the load run's")
    parser.add_argument(
        "--no-javascript",
        dest="javascript",
        action="store_false",
        help="answer as a plain form (POST, redirect, page) instead of as the page's script",
    )
    parser.add_argument(
        "--cprofile",
        metavar="ENDPOINT",
        help="profile the calls of one endpoint (e.g. 'answer (JSON)') and print where the "
        "time goes",
    )
    parser.add_argument(
        "--sql", metavar="ENDPOINT", help="print the SQL of one endpoint's last call"
    )
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--top", type=int, default=25, help="functions --cprofile prints")
    args = parser.parse_args()
    os.environ.update(server_environment(database_url=args.database_url, workdir=args.workdir))
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    queries: dict[str, list[int]] = defaultdict(list)
    statements: list[str] = []  # --sql's
    # CPU time, as the load run's efficiency figure counts it: waits on PostgreSQL are not ours.
    profiler = cProfile.Profile(time.process_time) if args.cprofile else None

    def call(
        client: Client,
        label: str,
        method: str,
        path: str,
        data: dict | None = None,
        *,
        json: bool = False,
    ):
        headers = {"HTTP_ACCEPT": "application/json"} if json else {}
        if json:  # as survey.js posts: URL-encoded (URLSearchParams), not multipart
            data = urlencode(data or {}, doseq=True)
            headers["content_type"] = "application/x-www-form-urlencoded"
        with CaptureQueriesContext(connection) as captured:
            profiling = profiler is not None and label == args.cprofile
            if profiling:
                profiler.enable()
            start, start_cpu = time.perf_counter(), time.process_time()
            response = getattr(client, method)(path, data or {}, **headers)
            if profiling:
                profiler.disable()
            times[label].append((time.perf_counter() - start) * 1000)
            cpu[label].append((time.process_time() - start_cpu) * 1000)
        queries[label].append(len(captured.captured_queries))
        if label == args.sql:
            statements[:] = [q["sql"] for q in captured.captured_queries]
        return response

    base = f"/s/{args.slug}/"
    # One client (one handler, middleware loaded once, as in a server process); a fresh
    # cookie jar per participant.
    client = Client(SERVER_NAME="127.0.0.1")
    for _ in range(args.participants):
        client.cookies.clear()
        pid = uuid.uuid4().hex[:24]
        query = f"?PROLIFIC_PID={pid}&STUDY_ID=PROFILE&SESSION_ID=S{pid}"
        path = call(client, "entry GET", "get", base + query)["Location"]
        call(client, "consent GET", "get", path)
        path = call(client, "consent POST", "post", path, {"decision": "agree"})["Location"]
        call(client, "demographics GET", "get", path)
        fields = {"gender": "undisclosed", "age_group": "undisclosed"}
        path = call(client, "demographics POST", "post", path, fields)["Location"]
        call(client, "instructions GET", "get", path)
        path = call(client, "instructions POST", "post", path)["Location"]
        shown = None  # the next question as the page's script received it
        while "/question/" in path:
            if shown is None:
                html = call(client, "question GET", "get", path).content.decode()
                numbers = {int(n): value for n, value in PHOTO_RE.findall(html)}
                scale = {label.strip(): value for value, label in CONFIDENCE_RE.findall(html)}
                told, said = ATTENTION_RE.search(html), TOLD_RE.search(html)
                photo = numbers[int(told.group(1))] if told else numbers[1]
                confidence = scale[said.group(1)] if told and said else "3"
                token = TOKEN_RE.search(html).group(1)
            else:
                numbers = {c["number"]: str(c["number"]) for c in shown["candidates"]}
                told = shown["attention"]
                photo = numbers[told["photo"]] if told else numbers[1]
                confidence = scale[told["label"]] if told else "3"
                token = shown["token"]
            fields = {"question": token, "selected": [photo], "confidence": confidence}
            # The efficiency baseline (benchmarks/load/minimal.py) once per answer, same client.
            call(client, "minimal answer", "post", f"/__load/{args.slug}/minimal-answer/")
            if args.javascript:
                reply = call(client, "answer (JSON)", "post", path, fields, json=True).json()
                path, shown = reply["next"], reply["question"]
            else:
                path = call(client, "answer POST", "post", path, fields)["Location"]
        call(client, "debrief GET", "get", path)
        final = call(client, "debrief POST", "post", path)["Location"]
        if "cc=" not in final:
            raise SystemExit(f"the debrief did not send back to Prolific: {final}")

    way = "the page's script (JSON answers)" if args.javascript else "plain forms"
    print(
        f"{args.participants} participants, in process, production settings, {args.slug!r}, "
        f"answering as {way}"
    )
    print(
        f"  {'endpoint':18s} {'n':>5s} {'p50 ms':>7s} {'p90 ms':>7s} {'cpu ms':>7s} {'queries':>8s}"
    )
    for label, values in times.items():
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(
            f"  {label:18s} {len(values):5d} {statistics.median(values):7.1f} {p90:7.1f} "
            f"{statistics.median(cpu[label]):7.1f} {statistics.median(queries[label]):8.0f}"
        )
    answers = len(cpu.get("answer (JSON)", cpu.get("answer POST", [])))
    flow = sum(sum(values) for label, values in cpu.items() if label != "minimal answer")
    if answers and cpu["minimal answer"]:
        per_question, minimal = flow / answers, statistics.mean(cpu["minimal answer"])
        print(
            f"  CPU per question, every page included: {per_question:.2f} ms; minimal answer "
            f"view {minimal:.2f} ms; ratio {per_question / minimal:.2f} (in process: no HTTP, "
            "no gunicorn — the load run's --efficiency measures the served figure)"
        )
    if args.sql:
        print(f"\nthe SQL of the last {args.sql!r}:")
        for number, sql in enumerate(statements, start=1):
            print(f"  {number}. {sql[:400]}")
    if profiler is not None:
        print(
            f"\nwhere the time of {args.cprofile!r} goes (sorted by {args.sort}, top {args.top}):"
        )
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
