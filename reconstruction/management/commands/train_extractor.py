"""Train an ArcFace face extractor (iresnet50 or EfficientNet-B0) on an imported dataset."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.models import Split
from reconstruction.services import ExtractorTrainError, extractor_train


class Command(BaseCommand):
    help = (
        "Train --backbone (arcface-r50: iresnet50, arcface-effnet: EfficientNet-B0) with the "
        "ArcFace loss (s=64, m=0.5; SGD, polynomial decay) on the aligned 112×112 faces of a "
        "dataset split, one class per identity. Checkpoints every epoch; --resume continues "
        "an interrupted run from its last epoch. The weights are stored with their SHA-256 "
        "(admin: reconstructor artifacts) and as a file for `embed --recognizer BACKBONE "
        "--weights PATH`. Several GPUs: torchrun --nproc_per_node=K manage.py train_extractor …"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.recognizers.backbones import BACKBONES
        from reconstruction.recognizers.services import EXTRACTOR_PRESETS

        parser.add_argument("dataset", help="Name of an imported dataset (see import_faces).")
        parser.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
        parser.add_argument("--split", default=Split.TRAIN, choices=Split.values)
        parser.add_argument(
            "--preset",
            default="paper",
            choices=EXTRACTOR_PRESETS,
            help="paper: insightface's settings (lr 0.1, batch 128 per process, 20 epochs; "
            "GPU); tiny: batch 8, 2 epochs, lr 0.01 (CPU tests).",
        )
        parser.add_argument("--epochs", type=int, default=None, help="Passes over the faces.")
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Faces per step and process."
        )
        parser.add_argument("--lr", type=float, default=None, help="Initial SGD learning rate.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
        parser.add_argument(
            "--out",
            type=Path,
            default=None,
            metavar="PATH",
            help="Also write the trained weights here (default: the stored file's path).",
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Continue the unfinished run of these settings from its last checkpoint.",
        )
        parser.add_argument(
            "--stop-at-epoch",
            type=int,
            default=None,
            metavar="E",
            help="Stop after epoch E (checkpointed; finish later with --resume).",
        )
        parser.add_argument(
            "--checkpoint-dir",
            type=Path,
            default=Path(settings.VAR_DIR) / "checkpoints",
            help="Where unfinished runs keep their state.",
        )
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            summary = extractor_train(
                dataset=options["dataset"],
                backbone=options["backbone"],
                split=options["split"],
                preset=options["preset"],
                epochs=options["epochs"],
                batch_size=options["batch_size"],
                lr=options["lr"],
                seed=options["seed"],
                device=options["device"],
                out=options["out"],
                resume=options["resume"],
                stop_at_epoch=options["stop_at_epoch"],
                checkpoint_dir=options["checkpoint_dir"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
            )
        except ExtractorTrainError as exc:
            raise CommandError(str(exc)) from exc
        if not summary.is_main_process:
            return
        losses = ", ".join(f"{loss:.3f}" for loss in summary.epoch_losses) or "-"
        data = (
            f"{summary.n_images} faces of {summary.n_identities} identities "
            f"({summary.dataset}/{summary.split})"
        )
        if summary.start_step:
            self.stdout.write(
                f"Resumed from epoch {summary.start_epoch} ({summary.checkpoint_dir})."
            )
        artifact = summary.artifact
        if artifact is None:
            self.stdout.write(
                f"{summary.backbone}: stopped after epoch {summary.epoch}/{summary.epochs} on "
                f"{data}; loss per epoch {losses}; checkpoint in {summary.checkpoint_dir} — run "
                "again with --resume to finish."
            )
            return
        state = "trained" if summary.created else "already trained"
        self.stdout.write(
            f"{summary.backbone} weights #{artifact.pk} ({state}): {data}, "
            f"{summary.epochs} epochs ({artifact.metrics.get('steps')} steps), seed "
            f"{artifact.seed}, device {artifact.device}; loss per epoch {losses}\n"
            f"sha256 {artifact.sha256}\n"
            f"weights file: {summary.weights_path}\n"
            f"Embed with it: manage.py embed DATASET --recognizer {summary.backbone} "
            f"--weights {summary.weights_path}"
        )
