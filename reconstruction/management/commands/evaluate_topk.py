"""Metric 1: top-K matching of stored reconstructions in a recognizer F', with sweeps."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.metric1.engines import PAPER_ENGINE_K, PAPER_ENGINE_N
from reconstruction.metric1.scoring import PAPER_KS
from reconstruction.models import FaceDataset, TopKRun


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
        "with Table II, as CSV, Markdown and figures in --out; stored as a TopKRun. "
        "With --engine (e.g. rekognition) instead of --recognizer: one gallery draw enrolled "
        "in a commercial engine, each query searched once, the K sweep only, with the "
        "paper's defaults (N = 5000, K = 5, the engine's default threshold); every enrolled "
        "identity may answer, other targets' identities included, unless "
        "--drop-other-targets; --dry-run prints the API calls and estimated cost and sends "
        "nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.recognizers.registry import RECOGNIZERS

        parser.add_argument("--dataset", required=True)
        parser.add_argument("--recognizer", choices=sorted(RECOGNIZERS), help="A local F'.")
        parser.add_argument(
            "--engine", help="A commercial F' (reconstruction/engines), e.g. rekognition."
        )
        parser.add_argument(
            "--collection", default=None, help="Engine collection (default: named by the draw)."
        )
        parser.add_argument("--region", default=None, help="Engine region, e.g. us-east-1.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Engine: print calls and cost, send nothing."
        )
        parser.add_argument("--method", action="append", default=None, help="Repeatable.")
        parser.add_argument("--reconstructions-of", default=None, metavar="F")
        parser.add_argument(
            "--k", default=None, help="K list (K sweep). Default: 5,10,…,40 (engine: 5)."
        )
        parser.add_argument(
            "--n", type=int, default=None, help="N of the K sweep. Default: 1000 (engine: 5000)."
        )
        parser.add_argument("--ns", default="50,100,500,1000,2500,5000", help="N sweep list.")
        parser.add_argument(
            "--k-ref",
            type=int,
            default=None,
            help="K of the N sweep and of Table II. Default: 25 (engine: 5).",
        )
        parser.add_argument(
            "--sweep", choices=["k", "n", "both"], default=None, help="Default: both (engine: k)."
        )
        parser.add_argument("--trials", type=int, default=None, help="Default: 10 (engine: 1).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--include-source", action="store_true", help="Also run the source-included variant."
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="Cosine threshold (local; none by default) or the engine's similarity "
            "threshold (default: the engine's own default; Rekognition: 0–100, 80).",
        )
        parser.add_argument(
            "--drop-other-targets",
            action="store_true",
            help="Engine: drop the other queries' true identities from each answer, so each "
            "query is ranked against exactly N identities. By default they are kept: all "
            "targets are enrolled in one database, as in the paper, and may be returned as "
            "false positives.",
        )
        parser.add_argument("--by", choices=["image", "identity"], default="image")
        parser.add_argument("--no-baselines", action="store_true")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--out", type=Path, default=None, help="Output folder.")
        parser.add_argument(
            "--cache-dir", type=Path, default=Path(settings.VAR_DIR) / "metric1-cache"
        )

    def handle(self, *args: object, **options: object) -> None:
        from reconstruction.metric1.engines import ENGINES, EngineError

        if options["engine"] and options["recognizer"]:
            raise CommandError(
                "Give either --recognizer (a local F') or --engine (a commercial one), not both."
            )
        if not options["engine"] and not options["recognizer"]:
            raise CommandError("Give --recognizer (a local F') or --engine (e.g. rekognition).")
        if options["engine"] and options["engine"] not in ENGINES:
            raise CommandError(
                f"Unknown engine {options['engine']!r}; known: {', '.join(sorted(ENGINES))} "
                "(an engine is one file in reconstruction/metric1/engines/)."
            )
        try:
            if options["engine"]:
                self._engine(options)
            else:
                self._local(options)
        except FaceDataset.DoesNotExist as exc:
            raise CommandError(f"No dataset {options['dataset']!r}: run import_faces.") from exc
        except (ValueError, EngineError) as exc:
            raise CommandError(str(exc)) from exc

    def _local(self, options: dict) -> None:
        from reconstruction.services import topk_evaluate

        for engine_only in ("collection", "region", "dry_run", "drop_other_targets"):
            if options[engine_only]:
                raise CommandError(f"--{engine_only.replace('_', '-')} needs --engine.")
        trials = 10 if options["trials"] is None else options["trials"]
        if trials < 1:
            raise CommandError("--trials must be at least 1.")
        out = options["out"] or Path(settings.VAR_DIR) / "metric1" / options["recognizer"]
        run = topk_evaluate(
            dataset=options["dataset"],
            recognizer=options["recognizer"],
            out_dir=out,
            methods=options["method"],
            reconstructions_of=options["reconstructions_of"],
            ks=PAPER_KS if options["k"] is None else _ints(options["k"]),
            ns=_ints(options["ns"]),
            k=25 if options["k_ref"] is None else options["k_ref"],
            n=1000 if options["n"] is None else options["n"],
            sweep=options["sweep"] or "both",
            trials=trials,
            seed=options["seed"],
            include_source=options["include_source"],
            threshold=options["threshold"],
            by=options["by"],
            baselines=not options["no_baselines"],
            cache_dir=options["cache_dir"],
            device=options["device"],
        )
        self._report(run, out)

    def _engine(self, options: dict) -> None:
        from reconstruction.metric1.services import topk_engine_plan, topk_evaluate_engine

        engine = options["engine"]
        if options["sweep"] not in (None, "k"):
            raise CommandError(
                f"--sweep {options['sweep']}: a commercial engine runs the K sweep only (an N "
                "sweep needs one collection, and its billed enrolment, per gallery draw)."
            )
        if options["trials"] not in (None, 1):
            raise CommandError(
                "--trials: a commercial engine enrols one gallery draw (the local run's first)."
            )
        if options["by"] != "image":
            raise CommandError("--by identity: a commercial engine ranks faces (images) only.")
        n = PAPER_ENGINE_N if options["n"] is None else options["n"]
        if n < 1:
            raise CommandError("--n must be at least 1.")
        ks = (PAPER_ENGINE_K,) if options["k"] is None else _ints(options["k"])
        common = {
            "dataset": options["dataset"],
            "engine": engine,
            "collection": options["collection"],
            "region": options["region"],
            "methods": options["method"],
            "reconstructions_of": options["reconstructions_of"],
            "ks": ks,
            "n": n,
            "seed": options["seed"],
            "baselines": not options["no_baselines"],
            "drop_other_targets": options["drop_other_targets"],
        }
        if options["dry_run"]:
            plan = topk_engine_plan(**common)
            self.stdout.write(f"Dry run: nothing sent to {engine}.")
            self.stdout.write(plan.describe())
            return
        out = options["out"] or Path(settings.VAR_DIR) / "metric1" / engine
        run = topk_evaluate_engine(
            **common,
            out_dir=out,
            k=PAPER_ENGINE_K if options["k_ref"] is None else options["k_ref"],
            include_source=options["include_source"],
            threshold=options["threshold"],  # None: the engine's own default
        )
        self.stdout.write(
            "N sweep not run for a commercial engine (one collection per gallery draw)."
        )
        self._report(run, out)
        collection = run.config["collection"]
        region = f" --region {run.config['region']}" if run.config["region"] else ""
        cleanup = (
            f"`manage.py rekognition_cleanup {collection}{region}`"
            if engine == "rekognition"
            else f"{engine}'s console"
        )
        self.stdout.write(
            f"Collection {collection} kept (a re-run skips enrolment); delete it with {cleanup}."
        )

    def _report(self, run: TopKRun, out: Path) -> None:
        for group in ("photo", "random", *run.methods):
            tpr = run.reference_rate(group)
            if tpr is not None:
                fpr = run.reference_rate(group, "fpr")
                no_match = run.reference_rate(group, "no_match")
                self.stdout.write(
                    f"{group}: tpr {100 * tpr:.1f}% fpr {100 * fpr:.1f}% "
                    f"no match {100 * no_match:.1f}% (N = {run.gallery_n}, K = {run.k})"
                )
        self.stdout.write(f"TopKRun #{run.pk}: {run.queries} queries, {run.seconds:.1f} s → {out}")
