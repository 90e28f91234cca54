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
import os
import re
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

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
        with CaptureQueriesContext(connection) as captured:
            start, start_cpu = time.perf_counter(), time.process_time()
            response = getattr(client, method)(path, data or {}, **headers)
            times[label].append((time.perf_counter() - start) * 1000)
            cpu[label].append((time.process_time() - start_cpu) * 1000)
        queries[label].append(len(captured.captured_queries))
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
            if args.javascript:
                reply = call(client, "answer (JSON)", "post", path, fields, json=True).json()
                path, shown = reply["next"], reply["question"]
            else:
                path = call(client, "answer POST", "post", path, fields)["Location"]
        call(client, "debrief GET", "get", path)
        path = call(client, "debrief POST", "post", path)["Location"]
        call(client, "done GET", "get", path)

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


if __name__ == "__main__":
    main()
