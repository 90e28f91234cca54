"""`manage.py simulate_participants SLUG`: bots that take a study through its real HTTP pages."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey.bots import (
    BOT_STUDY_ID,
    DEFAULT_OBSERVER,
    BotError,
    BotResult,
    LocalServer,
    ObserverParams,
    PilotRun,
    bots_run,
    observer_create,
    observer_expected_accuracy,
)
from survey.models import Study


class Command(BaseCommand):
    help = (
        "Pilot a study with simulated participants: N bots take it through the real HTTP "
        "pages (a server at --base-url, else one started in this process on a loopback port) "
        "and answer from an observer model — a recognizer's cosine similarities turned into "
        "a pick and a confidence by a noisy softmax rule (docs/pilot.md), or 'random'. A "
        "--careless share answers at random and fails the attention checks. Prints the "
        "outcomes and the observer's expected accuracy per method."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")
        parser.add_argument("--n", type=int, default=200, help="number of bots (default 200)")
        parser.add_argument(
            "--observer",
            default=DEFAULT_OBSERVER,
            help=f"'random' or a recognizer name (default {DEFAULT_OBSERVER})",
        )
        parser.add_argument(
            "--base-url",
            help="a running server (e.g. http://127.0.0.1:8000); default: start one here",
        )
        parser.add_argument(
            "--careless", type=float, default=0.1, help="share of careless bots (default 0.1)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--concurrency", type=int, default=4, help="bots at a time (default 4)")
        parser.add_argument(
            "--images",
            choices=["every", "new"],
            default="every",
            help="every: each bot loads all images of its pages, like a browser (default); "
            "new: only images the observer has not embedded yet (a faster pilot)",
        )
        parser.add_argument(
            "--think", type=float, default=0.0, help="mean seconds a bot waits per question"
        )
        defaults = ObserverParams()
        parser.add_argument("--temperature", type=float, default=defaults.temperature)
        parser.add_argument("--none-threshold", type=float, default=defaults.none_threshold)
        parser.add_argument("--confidence-step", type=float, default=defaults.confidence_step)
        parser.add_argument("--confidence-noise", type=float, default=defaults.confidence_noise)
        parser.add_argument(
            "--force",
            action="store_true",
            help="allow bots on a study that is not a demo (their answers mix with real ones)",
        )
        parser.add_argument("--out", help="write every bot's answers and the summary as JSON")

    def handle(self, *args: object, **options: object) -> None:
        slug = options["slug"]
        study = Study.objects.filter(slug=slug).first()
        base_url = options["base_url"]
        if study is None and not base_url:
            raise CommandError(f"No study with slug {slug!r} here; check the slug.")
        if study is not None:
            if study.status != Study.Status.OPEN:
                raise CommandError(
                    f"Study {slug!r} is {study.get_status_display().lower()}: bots enter like "
                    "participants, so open it first (a demo study is open)."
                )
            if not study.is_demo and not options["force"]:
                raise CommandError(
                    f"Study {slug!r} is not a demo: simulated participants would be mixed with "
                    "real ones in its exports and analyses. Pilot on a demo or a copy of the "
                    "study, or pass --force."
                )
        try:
            params = ObserverParams(
                temperature=options["temperature"],
                none_threshold=options["none_threshold"],
                confidence_step=options["confidence_step"],
                confidence_noise=options["confidence_noise"],
            )
            observer = observer_create(name=options["observer"], params=params)
        except BotError as exc:
            raise CommandError(str(exc)) from exc
        server = None
        concurrency = options["concurrency"]
        if not base_url:
            server = LocalServer()
            base_url = server.url
            if server.shares_one_connection:
                concurrency = 1  # one in-memory SQLite connection: no parallel requests
        self.stdout.write(
            f"{options['n']} bots ({options['careless']:.0%} careless, observer "
            f"{observer.name}) → {base_url}/s/{slug}/, {concurrency} at a time"
        )
        study_id = (study.prolific_study_id if study else "") or BOT_STUDY_ID
        step = max(1, options["n"] // 10)

        def progress(result: BotResult, done: int) -> None:
            if done % step == 0 or done == options["n"]:
                self.stdout.write(f"  {done}/{options['n']} bots done")

        try:
            run = bots_run(
                base_url=base_url,
                slug=slug,
                n=options["n"],
                observer=observer,
                careless=options["careless"],
                seed=options["seed"],
                concurrency=concurrency,
                study_id=study_id,
                think_seconds=options["think"],
                every_image=options["images"] == "every",
                progress=progress,
            )
        except BotError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if server is not None:
                server.stop()
        summary = self._summary(run, study)
        if options["out"]:
            out = Path(options["out"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"summary": summary, "run": run.as_dict()}, indent=1))
            self.stdout.write(f"Answers and summary written to {out}")
        errors = [r for r in run.results if r.outcome == "error"]
        if errors:
            raise CommandError(
                f"{len(errors)} of {len(run.results)} bots did not finish; first: "
                f"{errors[0].pid}: {errors[0].error}"
            )

    def _summary(self, run: PilotRun, study: Study | None) -> dict:
        careless = sum(r.careless for r in run.results)
        per_bot = run.seconds / max(1, len(run.results))
        self.stdout.write(
            f"Done in {run.seconds:.1f} s ({per_bot:.2f} s per bot): "
            f"{run.count('completed')} completed, {run.count('ended')} ended early "
            f"(failed attention or declined), {run.count('error')} errors; "
            f"{careless} careless bots. Requests: {sum(r.requests for r in run.results)}."
        )
        if run.images_embedded:
            self.stdout.write(
                f"Observer {run.observer}: {run.images_embedded} images embedded "
                f"({run.images_without_face} without a detected face, embedded whole)."
            )
        expected = []
        if study is not None:
            expected = observer_expected_accuracy(study=study, run=run)
            if expected:
                self.stdout.write(
                    "Target-present answers of attentive, completed bots (the observer's "
                    "expected accuracy is the mean of its own P(correct)):"
                )
                for row in expected:
                    self.stdout.write(
                        f"  {row.method:<11} n={row.n_responses:<5} expected "
                        f"{row.expected:.3f}  observed {row.observed:.3f}"
                    )
        return {
            "completed": run.count("completed"),
            "ended": run.count("ended"),
            "errors": run.count("error"),
            "careless": careless,
            "seconds": run.seconds,
            "expected_accuracy": [row.__dict__ for row in expected],
        }
