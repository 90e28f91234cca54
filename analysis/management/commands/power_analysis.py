"""`manage.py power_analysis`: smallest detectable effects for planned numbers of participants."""

import math

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.power import power


def _num(value: float, unit: str = "") -> str:
    """One decimal, or a dash where no effect short of 100% accuracy is detectable."""
    return "—" if math.isnan(value) else f"{value:.1f}{unit}"


class Command(BaseCommand):
    help = (
        "Print the smallest detectable effects per planned N: accuracy above chance (one-sided "
        "t test on participant means) and the difference between two methods (paired, "
        "Bonferroni over the 6 pairs). Analytic, under the simulation model (participant and "
        "identity SDs on the logit scale)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--participants",
            type=int,
            nargs="+",
            default=[50, 100, 150, 200, 300, 400],
            metavar="N",
            help="planned numbers of analysed participants (default: 50 100 150 200 300 400)",
        )
        parser.add_argument("--questions-per-method", type=int, default=5)
        parser.add_argument("--alpha", type=float, default=0.05)
        parser.add_argument("--power", type=float, default=0.8, help="target power")
        parser.add_argument("--k", type=int, default=5, help="candidates per question (chance 1/K)")
        parser.add_argument("--participant-sd", type=float, default=0.8)
        parser.add_argument("--identity-sd", type=float, default=0.5)
        parser.add_argument(
            "--baseline",
            type=float,
            default=0.35,
            help="accuracy of the weaker method in the between-methods comparison",
        )

    def handle(self, *args: object, **options: object) -> None:
        ns, q, alpha = options["participants"], options["questions_per_method"], options["alpha"]
        if min(ns) < 3:
            raise CommandError("Plan at least 3 participants.")
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
            f"{options['participant_sd']}, identity SD {options['identity_sd']} (logit):"
        )
        header = (
            f"{'N':>5}  {'min accuracy':>12}  {'pp > chance':>11}  {'d_z':>5}  "
            f"{'pp between methods':>18}  {'d_z':>5}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for n in sorted(set(ns)):
            r = power(
                n,
                questions_per_method=q,
                chance=chance,
                alpha=alpha,
                target_power=options["power"],
                participant_sd=options["participant_sd"],
                identity_sd=options["identity_sd"],
                comparison_baseline=options["baseline"],
            )
            self.stdout.write(
                f"{n:>5}  {_num(100 * r.min_accuracy_above_chance, '%'):>12}  "
                f"{_num(r.min_pp_above_chance):>11}  {r.d_z_above_chance:>5.2f}  "
                f"{_num(r.min_pp_between_methods):>18}  {r.d_z_between_methods:>5.2f}"
            )
        self.stdout.write(
            f"pp between methods: over a method at {options['baseline']:.0%}, two-sided, "
            f"alpha {alpha}/6 (Bonferroni; Holm's first step). '—': not detectable at all."
        )
