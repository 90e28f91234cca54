"""Metric 1: top-K matching of stored reconstructions in a recognizer F', with sweeps."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.models import FaceDataset


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CommandError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise CommandError(f"expected positive integers, got {text!r}")
    return values


class Command(BaseCommand):
    help = (
        "Enrol random galleries of N identities of --dataset in F' (--recognizer; the true "
        "identity always enrolled, the query's source photo excluded) and query each stored "
        "reconstruction plus the photo and random-face baselines; report tpr, fpr and "
        "no-match over the K sweep (at --n) and the N sweep (at K = 25 or the last --k), "
        "with Table II, as CSV, Markdown and figures in --out; stored as a TopKRun."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.recognizers import RECOGNIZERS

        parser.add_argument("--dataset", required=True)
        parser.add_argument("--recognizer", required=True, choices=sorted(RECOGNIZERS))
        parser.add_argument("--method", action="append", default=None, help="Repeatable.")
        parser.add_argument("--reconstructions-of", default=None, metavar="F")
        parser.add_argument("--k", default="5,10,15,20,25,30,35,40", help="K list (K sweep).")
        parser.add_argument("--n", type=int, default=1000, help="N of the K sweep.")
        parser.add_argument("--ns", default="50,100,500,1000,2500,5000", help="N sweep list.")
        parser.add_argument("--k-ref", type=int, default=25, help="K of the N sweep.")
        parser.add_argument("--sweep", choices=["k", "n", "both"], default="both")
        parser.add_argument("--trials", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--include-source", action="store_true", help="Also run the source-included variant."
        )
        parser.add_argument("--threshold", type=float, default=None, help="Cosine threshold.")
        parser.add_argument("--by", choices=["image", "identity"], default="image")
        parser.add_argument("--no-baselines", action="store_true")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--out", type=Path, default=None, help="Output folder.")
        parser.add_argument(
            "--cache-dir", type=Path, default=Path(settings.VAR_DIR) / "metric1-cache"
        )

    def handle(self, *args: object, **options: object) -> None:
        from reconstruction.services import topk_evaluate

        if options["trials"] < 1:
            raise CommandError("--trials must be at least 1.")
        out = options["out"] or Path(settings.VAR_DIR) / "metric1" / options["recognizer"]
        try:
            run = topk_evaluate(
                dataset=options["dataset"],
                recognizer=options["recognizer"],
                out_dir=out,
                methods=options["method"],
                reconstructions_of=options["reconstructions_of"],
                ks=_ints(options["k"]),
                ns=_ints(options["ns"]),
                k=options["k_ref"],
                n=options["n"],
                sweep=options["sweep"],
                trials=options["trials"],
                seed=options["seed"],
                include_source=options["include_source"],
                threshold=options["threshold"],
                by=options["by"],
                baselines=not options["no_baselines"],
                cache_dir=options["cache_dir"],
                device=options["device"],
            )
        except FaceDataset.DoesNotExist as exc:
            raise CommandError(f"No dataset {options['dataset']!r}: run import_faces.") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for group in ("photo", "random", *run.methods):
            tpr = run.reference_rate(group)
            if tpr is not None:
                fpr = run.reference_rate(group, "fpr")
                self.stdout.write(
                    f"{group}: tpr {100 * tpr:.1f}% fpr {100 * fpr:.1f}% "
                    f"(N = {run.gallery_n}, K = {run.k})"
                )
        self.stdout.write(f"TopKRun #{run.pk}: {run.queries} queries, {run.seconds:.1f} s → {out}")
