"""Reconstruct faces from F's vectors of a dataset's target images (idempotent)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.models import FaceDataset, ReconstructorArtifact
from reconstruction.services import reconstruct_targets


class Command(BaseCommand):
    help = (
        "Reconstruct the first image of each target identity of --dataset from its vector in "
        "--recognizer with --method; targets already reconstructed with the same method, F, "
        "config and seed are skipped. Long runs checkpoint and resume. Eigenfaces runs with "
        "an eigenbasis (train_eigenbasis); nbnet, naive and vec2face with weights trained on "
        "--recognizer's vectors (train_reconstructor), whose training config is recorded, "
        "with the network whose gradients trained them and whether that was F (white-box)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.methods import METHODS
        from reconstruction.recognizers.registry import RECOGNIZERS

        parser.add_argument("--method", required=True, choices=sorted(METHODS))
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--recognizer", required=True, choices=sorted(RECOGNIZERS))
        parser.add_argument("--targets", type=int, default=None, metavar="N")
        parser.add_argument(
            "--preset",
            default="paper",
            choices=["paper", "tiny"],
            help="Eigenfaces search settings; parametric methods use their artifact's config.",
        )
        parser.add_argument(
            "--iterations",
            type=int,
            default=None,
            metavar="N",
            help="Eigenfaces only: a budget other than the paper's 2000, in its proportions.",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
        parser.add_argument(
            "--basis",
            "--artifact",
            dest="artifact",
            type=int,
            default=None,
            metavar="ID",
            help=(
                "ReconstructorArtifact id (default: the newest of the method, trained on "
                "--dataset if any; for parametric methods, on --recognizer's vectors)."
            ),
        )
        parser.add_argument(
            "--checkpoint-dir",
            type=Path,
            default=Path(settings.VAR_DIR) / "checkpoints",
            help="Where unfinished runs keep their state (resumed on the next call).",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        if options["targets"] is not None and options["targets"] < 1:
            raise CommandError("--targets must be at least 1.")
        try:
            summary = reconstruct_targets(
                dataset=options["dataset"],
                method=options["method"],
                recognizer=options["recognizer"],
                targets=options["targets"],
                preset=options["preset"],
                seed=options["seed"],
                device=options["device"],
                artifact_id=options["artifact"],
                checkpoint_dir=options["checkpoint_dir"],
                progress=not options["no_progress"],
                iterations=options["iterations"],
            )
        except FaceDataset.DoesNotExist as exc:
            raise CommandError(f"No dataset {options['dataset']!r}: run import_faces.") from exc
        except ReconstructorArtifact.DoesNotExist as exc:
            raise CommandError(str(exc) or "No such artifact.") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        mean = sum(summary.cosines) / len(summary.cosines) if summary.cosines else float("nan")
        self.stdout.write(
            f"{summary.targets} targets: {summary.created} reconstructed, {summary.skipped} "
            f"already done; mean cosine in {options['recognizer']} {mean:.4f}; "
            f"{summary.seconds:.1f} s"
        )
