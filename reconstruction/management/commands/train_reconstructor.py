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
        "an interrupted or --max-steps-limited run resumes from --checkpoint-dir. The paper's "
        "attacker has only black-box access to F, so NBNet's perceptual and Vec2Face's "
        "identity loss use a network other than F (--feature-network) unless "
        "--allow-white-box."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.methods import PARAMETRIC
        from reconstruction.methods.parametric import PRESETS
        from reconstruction.recognizers.registry import RECOGNIZERS

        parser.add_argument("--method", required=True, choices=sorted(PARAMETRIC))
        parser.add_argument("--dataset", required=True, help="Imported dataset name.")
        parser.add_argument("--recognizer", required=True, choices=sorted(RECOGNIZERS))
        parser.add_argument("--split", default=Split.TRAIN, choices=Split.values)
        parser.add_argument(
            "--preset",
            default="paper",
            choices=PRESETS,
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
        _add_feature_network_arguments(parser)
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
                perceptual_mode=options["perceptual_mode"],
                feature_network=options["feature_network"],
                vgg19_weights=options["vgg19_weights"],
                allow_white_box=options["allow_white_box"],
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
            + _feature_network_note(artifact.metrics)
            + (
                f"; vectors: {summary.vectors_stored} stored, {summary.vectors_computed} computed"
                if summary.created
                else ""
            )
        )


def _add_feature_network_arguments(parser: CommandParser) -> None:
    """The options that choose (and record) the network whose gradients train the losses."""
    from reconstruction.methods.nbnet import PERCEPTUAL_MODES

    parser.add_argument(
        "--perceptual-mode",
        choices=PERCEPTUAL_MODES,
        default=None,
        help="nbnet: the perceptual phase's loss — replace (default; the original code: "
        "perceptual loss instead of L1) or added (the paper's text: L1 + perceptual). "
        "Either way the phase starts a fresh Adam at lr 2e-4, as the original does.",
    )
    parser.add_argument(
        "--feature-network",
        default=None,
        metavar="NAME",
        help="The network whose gradients train nbnet's perceptual loss or vec2face's "
        "identity loss: a recognizer other than F (nbnet's default: mobileface, or faceres "
        "when F is mobileface), or 'student' for vec2face (its default: a student trained "
        "on F's vectors of the training faces).",
    )
    parser.add_argument(
        "--vgg19-weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="nbnet: a torchvision-style VGG-19 state dict for the original relu3_2 "
        "perceptual loss (instead of a recognizer).",
    )
    parser.add_argument(
        "--allow-white-box",
        action="store_true",
        help="Permit F itself as the feature network (white-box access to F, which the "
        "paper's threat model excludes); recorded in the artifact.",
    )


def _feature_network_note(metrics: dict) -> str:
    """``; feature network X`` (and a white-box warning) for an artifact that has one."""
    network = metrics.get("feature_network")
    if not network or network == "none":
        return ""
    return f"; feature network {network}" + (
        " (F itself: white-box, allowed by --allow-white-box)" if metrics.get("white_box") else ""
    )
