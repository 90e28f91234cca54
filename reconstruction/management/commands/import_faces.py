"""Import an identity-per-folder face dataset: detect, align, record checksums and splits."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.faces.datasets import DEFAULT_SPLITS, DatasetLayoutError
from reconstruction.services import ImportSummary, dataset_import

LISTED = 20


class Command(BaseCommand):
    help = (
        "Import NAME from PATH (PATH/<identity>/<image>): detect the central face with dlib, "
        "align it to the ArcFace template (112×112, plus a 160×160 crop), store checksums and "
        "assign identity-disjoint splits. Re-running skips unchanged files."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Dataset name (a slug), e.g. lfw.")
        parser.add_argument("path", type=Path, help="Folder holding one sub-folder per identity.")
        parser.add_argument(
            "--limit-identities",
            type=int,
            default=None,
            metavar="N",
            help="Import only the first N identities (by folder name) that pass --min-images.",
        )
        parser.add_argument(
            "--min-images",
            type=int,
            default=1,
            metavar="M",
            help="Skip identities with fewer than M image files.",
        )
        parser.add_argument(
            "--split",
            default=DEFAULT_SPLITS,
            help=(
                "Identity fractions per split, adding up to 1; NAME=FRACTION@N admits only "
                f"identities with ≥ N images (default {DEFAULT_SPLITS})."
            ),
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the split assignment.")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args: object, **options: object) -> None:
        if options["min_images"] < 1 or (
            options["limit_identities"] is not None and options["limit_identities"] < 1
        ):
            raise CommandError("--min-images and --limit-identities must be at least 1.")
        try:
            summary = dataset_import(
                name=options["name"],
                path=options["path"],
                splits=options["split"],
                seed=options["seed"],
                limit_identities=options["limit_identities"],
                min_images=options["min_images"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
            )
        except (DatasetLayoutError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary_text(summary))


def summary_text(summary: ImportSummary) -> str:
    """The import summary as printed by the command."""
    splits = ", ".join(f"{k} {v}" for k, v in sorted(summary.splits.items()))
    lines = [
        f"Dataset {summary.dataset}: {summary.identities} identities "
        f"({summary.identities_created} new; {splits}"
        + (f"; {summary.splits_changed} moved split" if summary.splits_changed else "")
        + ")",
        f"Images: {summary.images} — {summary.ok} ok, {len(summary.no_face)} no face, "
        f"{len(summary.unreadable)} unreadable",
        f"This run: {summary.created} new, {summary.updated} changed, "
        f"{summary.unchanged} unchanged in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s processed)",
    ]
    if summary.skipped_identities or summary.ignored_files:
        lines.append(
            f"Left out: {summary.skipped_identities} identity folder(s) by --min-images/"
            f"--limit-identities, {summary.ignored_files} non-image file(s)"
        )
    if summary.no_face:
        lines.append(f"No face found ({len(summary.no_face)}):")
        lines += [f"  {path}" for path in summary.no_face[:LISTED]]
        if len(summary.no_face) > LISTED:
            lines.append(f"  … and {len(summary.no_face) - LISTED} more")
    if summary.unreadable:
        lines.append(f"Unreadable ({len(summary.unreadable)}):")
        lines += [f"  {path}: {message}" for path, message in summary.unreadable[:LISTED]]
        if len(summary.unreadable) > LISTED:
            lines.append(f"  … and {len(summary.unreadable) - LISTED} more")
    return "\n".join(lines)
