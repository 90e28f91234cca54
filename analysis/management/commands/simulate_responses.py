"""`manage.py simulate_responses SLUG --participants N`: pilot data through the real flow."""

import argparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.management.commands.analyze_study import study_by_slug
from analysis.services import AnalysisError, responses_simulate
from survey.models import FvrMethod

BAR_WIDTH = 30


def accuracies(text: str) -> dict[str, float | None]:
    """Parse 'eigenfaces=0.6,nbnet=0.4,naive=chance' (accuracy in (0, 1) or 'chance')."""
    out: dict[str, float | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        method, _, value = part.partition("=")
        method, value = method.strip(), value.strip()
        if method not in FvrMethod.values:
            raise argparse.ArgumentTypeError(
                f"unknown method '{method}' (known: {', '.join(FvrMethod.values)})"
            )
        if value == "chance":
            out[method] = None
            continue
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{part}' is not METHOD=ACCURACY") from None
        if not 0 < number < 1:
            raise argparse.ArgumentTypeError(f"accuracy of {method} must be in (0, 1)")
        out[method] = number
    return out


class Command(BaseCommand):
    help = (
        "Add simulated participants (Prolific IDs SIM000001, …) to a draft or demo study, "
        "answering through the real survey services from stated true per-method accuracies "
        "with participant and identity heterogeneity, so that analyze_study can be piloted. "
        "Refuses other studies unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")
        parser.add_argument("--participants", type=int, required=True, metavar="N")
        parser.add_argument(
            "--accuracy",
            type=accuracies,
            default=None,
            metavar="M=P,…",
            help="population-averaged accuracy per method on target-present questions, or "
            "'chance' for random picks (default: eigenfaces=0.6,nbnet=0.4,naive=0.2,"
            "vec2face=0.5)",
        )
        parser.add_argument(
            "--participant-sd", type=float, default=0.8, help="logit-scale SD between people"
        )
        parser.add_argument(
            "--identity-sd", type=float, default=0.5, help="logit-scale SD between faces"
        )
        parser.add_argument(
            "--careless",
            type=float,
            default=0.0,
            metavar="SHARE",
            help="share of participants who answer at random and fail the attention checks",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--force",
            action="store_true",
            help="allow an open or closed study that is not a demo (mixes fake and real data)",
        )

    def handle(self, *args: object, **options: object) -> None:
        study = study_by_slug(options["slug"])
        if options["participant_sd"] < 0 or options["identity_sd"] < 0:
            raise CommandError("SDs cannot be negative.")
        try:
            result = responses_simulate(
                study=study,
                participants=options["participants"],
                accuracies=options["accuracy"],
                participant_sd=options["participant_sd"],
                identity_sd=options["identity_sd"],
                careless_share=options["careless"],
                seed=options["seed"],
                force=options["force"],
                progress=self._progress if options["verbosity"] > 0 else None,
            )
        except AnalysisError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Added {result.participants} simulated participants to '{study.slug}' in "
            f"{result.seconds:.1f} s: {result.completed} completed, {result.failed_attention} "
            f"failed attention checks, {result.responses} responses. "
            f"Next: manage.py analyze_study {study.slug}"
        )

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stdout.write(f"\r[{bar}] {done}/{total}", ending="\n" if done == total else "")
        self.stdout.flush()
