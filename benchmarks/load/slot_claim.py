"""Cost of one assignment slot claim as a study grows: PostgreSQL, the real claim.

An arrival's questions come from the lowest free assignment slot (survey.services.slots). This
grows a demo study step by step — participants who completed, each holding the slot they
claimed, plus a fixed number in progress and a few who returned — and at each size times
``slot_claim`` for a new arrival (in a transaction rolled back, so the study stays as built),
printing the median and p90 wall time of the claim and PostgreSQL's own execution time of
the claim's query (EXPLAIN ANALYZE). A claim whose cost grows with the study's size slows
every arrival of a large study; one that depends only on how many are in progress does not.

    .venv/bin/python -m benchmarks.load.slot_claim [--sizes 0,1000,5000,20000] [--claims 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from benchmarks.load.run import DEFAULT_DATABASE_URL
from benchmarks.load.server import server_environment
from benchmarks.load.study import SLUG, prepare

FREE = 50  # slots decided and not claimed yet, after the held ones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,1000,5000,20000", help="completed participants")
    parser.add_argument("--in-progress", type=int, default=300, help="holders still answering")
    parser.add_argument("--returned", type=int, default=0, help="of those, who returned")
    parser.add_argument("--claims", type=int, default=200, help="claims timed per size")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL.replace("load", "slots"))
    parser.add_argument("--workdir", type=Path, default=Path("var/slot-claim"))
    parser.add_argument("--faces", type=Path, default=None, help="identity-per-folder photos")
    parser.add_argument("--per-method", type=int, default=10)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    env = server_environment(database_url=args.database_url, workdir=args.workdir)
    source = prepare(args, env)
    print(
        f"study '{SLUG}' built from {source}; {args.in_progress} in progress, "
        f"{args.returned} returned at every size; {args.claims} claims per size\n"
    )
    print(f"{'completed':>10} {'slots':>7} {'claim p50 ms':>13} {'p90 ms':>8} {'query ms':>9}")
    rows = []
    for size in sizes:
        row = measure(size, args)
        rows.append(row)
        print(
            f"{row['completed']:>10} {row['slots']:>7} {row['p50_ms']:>13.2f} "
            f"{row['p90_ms']:>8.2f} {row['query_ms']:>9.2f}"
        )
    print("\n" + json.dumps(rows))


def grow(study: object, completed: int, args: argparse.Namespace) -> None:
    """Rebuild the study's participants and slots as a study of that size would have them, in
    claim order: ``completed`` who completed, then those in progress (the ``--returned``
    among them), then free slots."""
    from django.utils import timezone

    from survey.assignment import design_fingerprint
    from survey.models import AssignmentSlot, MatchSet, Participant

    ids = list(MatchSet.objects.filter(study=study).order_by("pk").values_list("pk", flat=True))
    design = design_fingerprint(ids)
    AssignmentSlot.objects.filter(study=study).delete()
    Participant.objects.filter(study=study).delete()
    Status, Step = Participant.Status, Participant.Step
    people = [(Status.COMPLETED, Step.DONE)] * completed
    people += [(Status.ACTIVE, Step.QUESTIONS)] * args.in_progress
    # The ones who returned, spread among those in progress.
    for i in range(args.returned):
        where = completed + (i + 1) * args.in_progress // (args.returned + 1)
        people.insert(where, (Status.RETURNED, Step.QUESTIONS))
    now = timezone.now()
    made = Participant.objects.bulk_create(
        [
            Participant(
                study=study,
                pseudonym=f"B{i:08d}",
                session_id=f"S{i}",
                status=status,
                step=step,
                current_position=1,
            )
            for i, (status, step) in enumerate(people)
        ],
        batch_size=2000,
    )
    Participant.objects.filter(study=study).update(entered_at=now)  # all within their time
    rng = random.Random(completed)
    holders = made + [None] * FREE
    settles = hasattr(AssignmentSlot, "settled")  # the same run on code without it
    AssignmentSlot.objects.bulk_create(
        [
            AssignmentSlot(
                study=study,
                seq=seq,
                design=design,
                match_sets=sorted(rng.sample(ids, min(len(ids), study.question_count))),
                participant=p,
                claimed_at=now if p else None,
                **({"settled": p.status == Status.COMPLETED} if settles and p else {}),
            )
            for seq, p in enumerate(holders, start=1)
        ],
        batch_size=2000,
    )


def measure(completed: int, args: argparse.Namespace) -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from survey.assignment import design_fingerprint
    from survey.models import AssignmentSlot, MatchSet, Participant, Study
    from survey.services import slots

    study = Study.objects.get(slug=SLUG)
    grow(study, completed, args)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    ids = list(MatchSet.objects.filter(study=study).order_by("pk").values_list("pk", flat=True))
    arrival = Participant.objects.create(
        study=study, pseudonym=f"A{completed:09d}", session_id=f"A{completed}"
    )
    rng = random.Random(1)
    times = []
    for _ in range(args.claims):
        with transaction.atomic():
            started = time.perf_counter()
            slots.slot_claim(study=study, participant=arrival, match_set_ids=ids, rng=rng)
            times.append((time.perf_counter() - started) * 1000)
            transaction.set_rollback(True)
    query = slots.free_slot_query(study, design_fingerprint(ids), timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = query.query.sql_with_params()
        runs = []
        for _ in range(20):
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
            runs.append(cursor.fetchone()[0][0]["Execution Time"])
        transaction.set_rollback(True)
    arrival.delete()
    return {
        "completed": completed,
        "slots": AssignmentSlot.objects.filter(study=study).count(),
        "p50_ms": statistics.median(times),
        "p90_ms": statistics.quantiles(times, n=10)[-1],
        "query_ms": statistics.median(runs),
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
