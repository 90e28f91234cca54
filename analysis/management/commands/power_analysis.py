"""`manage.py power_analysis`: smallest detectable effects for planned participants and faces."""

import math

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.power import DEFAULT_FACE_SD, DEFAULT_PARTICIPANT_SD, PowerResult, power


def _num(value: float) -> str:
    """One decimal, or a dash where no effect short of 99% accuracy is detectable."""
    return "—" if math.isnan(value) else f"{value:.1f}"


class Command(BaseCommand):
    help = (
        "Print the smallest detectable effects for planned numbers of participants and faces "
        "(match sets) per method, for the report's default tests, which are crossed over "
        "participants and faces: accuracy above chance (one-sided) and the difference between "
        "two methods (two-sided, Bonferroni over the 6 pairs). Analytic, under the simulation "
        "model (participant and face SDs on the logit scale). A '*' marks designs where faces "
        "are the bottleneck (more than half of the variance): more match sets, not more "
        "participants, would help."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--participants",
            type=int,
            nargs="+",
            default=[50, 100, 200, 400],
            metavar="N",
            help="planned numbers of analysed participants (default: 50 100 200 400)",
        )
        parser.add_argument(
            "--faces",
            type=int,
            nargs="+",
            default=[8, 20, 50, 100],
            metavar="F",
            help="planned faces (match sets) per method (default: 8 20 50 100)",
        )
        parser.add_argument("--questions-per-method", type=int, default=5)
        parser.add_argument("--alpha", type=float, default=0.05)
        parser.add_argument("--power", type=float, default=0.8, help="target power")
        parser.add_argument("--k", type=int, default=5, help="candidates per question (chance 1/K)")
        parser.add_argument("--participant-sd", type=float, default=DEFAULT_PARTICIPANT_SD)
        parser.add_argument("--face-sd", type=float, default=DEFAULT_FACE_SD)
        parser.add_argument(
            "--baseline",
            type=float,
            default=0.35,
            help="accuracy of the weaker method in the between-methods comparison",
        )

    def handle(self, *args: object, **options: object) -> None:
        ns, q, alpha = options["participants"], options["questions_per_method"], options["alpha"]
        faces = sorted(set(options["faces"]))
        if min(ns) < 3:
            raise CommandError("Plan at least 3 participants.")
        if min(faces) < 2:
            raise CommandError("Plan at least 2 faces (match sets) per method.")
        if q < 1 or options["k"] < 2:
            raise CommandError("Need at least 1 question per method and K ≥ 2.")
        if not 0 < alpha < 0.5 or not 0 < options["power"] < 1:
            raise CommandError("--alpha must be in (0, 0.5) and --power in (0, 1).")
        chance = 1 / options["k"]
        if not chance < options["baseline"] < 1:
            raise CommandError("--baseline must lie between chance (1/K) and 1.")
        self.stdout.write(
            f"Smallest detectable effects at power {options['power']:.0%}, alpha {alpha}, "
            f"{q} questions per method, chance 1/K = {chance:.0%}, participant SD "
            f"{options['participant_sd']}, face SD {options['face_sd']} (logit):"
        )
        grid: dict[tuple[int, int], PowerResult] = {
            (n, f): power(
                n,
                questions_per_method=q,
                faces_per_method=f,
                chance=chance,
                alpha=alpha,
                target_power=options["power"],
                participant_sd=options["participant_sd"],
                face_sd=options["face_sd"],
                comparison_baseline=options["baseline"],
            )
            for n in sorted(set(ns))
            for f in faces
        }
        for title, field in (
            ("pp above chance", "min_pp_above_chance"),
            (
                f"pp between two methods (over a method at {options['baseline']:.0%})",
                "min_pp_between_methods",
            ),
        ):
            self.stdout.write(f"{title}; rows: participants, columns: faces per method")
            header = f"{'N':>6} |" + "".join(f"{f:>9}" for f in faces)
            self.stdout.write(header)
            self.stdout.write("-" * len(header))
            for n in sorted(set(ns)):
                cells = []
                for f in faces:
                    r = grid[(n, f)]
                    cells.append(
                        f"{_num(getattr(r, field)) + ('*' if r.faces_bottleneck else ' '):>9}"
                    )
                self.stdout.write(f"{n:>6} |" + "".join(cells))
        self.stdout.write(
            "*: faces are the bottleneck (more than half the variance of a method's accuracy). "
            "'—': not detectable at all."
        )
