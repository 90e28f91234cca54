"""Embed a dataset's aligned faces with a recognizer; only new or changed inputs are computed."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.recognizers.embedding import EmbedError, EmbedSummary, dataset_embed

LISTED = 20


class Command(BaseCommand):
    help = (
        "Compute RECOGNIZER's embeddings of DATASET's aligned faces and store them with their "
        "provenance (weights SHA-256, preprocessing, source SHA-256). Re-running computes only "
        "images that are new or whose photo, preprocessing or weights changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="Name of an imported dataset (see import_faces).")
        parser.add_argument(
            "--recognizer",
            required=True,
            help="dlib-resnet, faceres, mobileface; arcface-r50 or arcface-effnet with --weights.",
        )
        parser.add_argument(
            "--weights",
            metavar="PATH",
            help="State-dict file of an ArcFace backbone (train_extractor prints its path).",
        )
        parser.add_argument(
            "--device", default="cpu", help="cpu or cuda[:N] (dlib-resnet always runs on CPU)."
        )
        parser.add_argument("--batch", type=int, default=64, help="Images per batch (64).")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            summary = dataset_embed(
                dataset=options["dataset"],
                recognizer=options["recognizer"],
                device=options["device"],
                batch_size=options["batch"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
                weights=options["weights"],
            )
        except EmbedError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary_text(summary))


def summary_text(summary: EmbedSummary) -> str:
    """The embedding summary as printed by the command."""
    lines = [
        f"Dataset {summary.dataset} (fingerprint {summary.fingerprint[:12] or '-'}), "
        f"recognizer {summary.recognizer} (weights {summary.weights_sha256[:12]}), "
        f"device {summary.device}",
        f"Images: {summary.images} aligned — {summary.created} new, {summary.updated} "
        f"recomputed, {summary.unchanged} unchanged, {len(summary.failed)} failed",
        f"Time: {summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s "
        f"({summary.embed_images_per_second:.1f} images/s in the recognizer)",
    ]
    if summary.failed:
        lines.append(f"Failed ({len(summary.failed)}):")
        lines += [f"  {path}: {reason}" for path, reason in summary.failed[:LISTED]]
        if len(summary.failed) > LISTED:
            lines.append(f"  … and {len(summary.failed) - LISTED} more")
    return "\n".join(lines)
