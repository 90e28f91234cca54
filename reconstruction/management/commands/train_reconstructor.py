"""Train a parametric reconstructor (NBNet, Naive, Vec2Face) on F's vectors; store the weights."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.models import FaceDataset, Split
from reconstruction.services import ReconstructorTrainError, reconstructor_train


class Command(BaseCommand):
    help = (
        "Train --method (nbnet, naive or vec2face) to map --recognizer's vectors of the aligned "
        "faces of a dataset split (default: train) back to the faces, and store the weights "
        "as a ReconstructorArtifact with their provenance (dataset, split, faces, F and its "
        "weights SHA-256, config, seed, file SHA-256). A run already finished is not repeated; "
        "an interrupted or --max-steps-limited run resumes from --checkpoint-dir."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.methods import PARAMETRIC
        from reconstruction.recognizers import RECOGNIZERS

        parser.add_argument("--method", required=True, choices=sorted(PARAMETRIC))
        parser.add_argument("--dataset", required=True, help="Imported dataset name.")
        parser.add_argument("--recognizer", required=True, choices=sorted(RECOGNIZERS))
        parser.add_argument("--split", default=Split.TRAIN, choices=Split.values)
        parser.add_argument(
            "--preset",
            default="paper",
            choices=["paper", "cpu", "tiny"],
            help="paper: the study's settings (GPU); cpu: reduced scale; tiny: tests.",
        )
        parser.add_argument(
            "--epochs",
            type=float,
            default=None,
            help="Passes over the faces (nbnet: split 3:1 into L1 and perceptual phases; "
            "vec2face: epochs × faces images shown). Changes the config.",
        )
        parser.add_argument(
            "--max-steps",
            type=int,
            default=None,
            metavar="N",
            help="Stop at step N (checkpointed; run again without it to finish).",
        )
        parser.add_argument("--limit-images", type=int, default=None, metavar="N")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
        parser.add_argument(
            "--checkpoint-dir",
            type=Path,
            default=Path(settings.VAR_DIR) / "checkpoints",
            help="Where unfinished runs keep their state (resumed on the next call).",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        for name in ("max_steps", "limit_images"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        try:
            summary = reconstructor_train(
                method=options["method"],
                dataset=options["dataset"],
                recognizer=options["recognizer"],
                split=options["split"],
                preset=options["preset"],
                epochs=options["epochs"],
                max_steps=options["max_steps"],
                limit_images=options["limit_images"],
                seed=options["seed"],
                device=options["device"],
                checkpoint_dir=options["checkpoint_dir"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
            )
        except FaceDataset.DoesNotExist as exc:
            raise CommandError(f"No dataset {options['dataset']!r}: run import_faces.") from exc
        except ReconstructorTrainError as exc:
            raise CommandError(str(exc)) from exc
        artifact = summary.artifact
        if artifact is None:
            self.stdout.write(
                f"{summary.method}: stopped at step {summary.steps}/{summary.total_steps} on "
                f"{summary.n_images} faces; checkpoint in {summary.checkpoint_dir} — run again "
                "without --max-steps to finish."
            )
            return
        state = "trained" if summary.created else "already trained"
        self.stdout.write(
            f"{artifact.method} weights #{artifact.pk} ({state}): {artifact.n_images} faces of "
            f"{artifact.dataset.name}/{artifact.split}, F {artifact.recognizer}, "
            f"{artifact.metrics.get('steps')} steps, seed {artifact.seed}, "
            f"device {artifact.device}, sha256 {artifact.sha256[:16]}…, {artifact.file.name}"
            + (
                f"; vectors: {summary.vectors_stored} stored, {summary.vectors_computed} computed"
                if summary.created
                else ""
            )
        )
