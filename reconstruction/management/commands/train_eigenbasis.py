"""Fit the Eigenfaces decoder (Dec) and mean face on a training split; store the artifact."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.models import FaceDataset, Split
from reconstruction.services import eigenbasis_train


class Command(BaseCommand):
    help = (
        "Fit Dec (linear 1024 → 3×112×112, output standardised per sample) and the mean face "
        "on the aligned faces of a dataset split (default: train, identities disjoint from the "
        "targets), as a linear autoencoder (the paper's) or by PCA; store the file and a "
        "ReconstructorArtifact row with its SHA-256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from reconstruction.methods.eigenbasis import BASIS_METHODS

        parser.add_argument("--dataset", required=True, help="Imported dataset name.")
        parser.add_argument("--split", default=Split.TRAIN, choices=Split.values)
        parser.add_argument("--method", default="autoencoder", choices=BASIS_METHODS)
        parser.add_argument("--preset", default="paper", choices=["paper", "tiny"])
        parser.add_argument("--components", type=int, default=None, help="Default 1024.")
        parser.add_argument("--epochs", type=int, default=None, help="Autoencoder epochs.")
        parser.add_argument("--limit-images", type=int, default=None, metavar="N")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        try:
            artifact = eigenbasis_train(
                dataset=options["dataset"],
                split=options["split"],
                method=options["method"],
                preset=options["preset"],
                components=options["components"],
                epochs=options["epochs"],
                limit_images=options["limit_images"],
                seed=options["seed"],
                device=options["device"],
                progress=not options["no_progress"],
            )
        except FaceDataset.DoesNotExist as exc:
            raise CommandError(f"No dataset {options['dataset']!r}: run import_faces.") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"eigenbasis #{artifact.pk}: {artifact.fitting} on {artifact.n_images} faces of "
            f"{artifact.dataset.name}/{artifact.split}, "
            f"{artifact.metrics.get('data_components')} data components, "
            f"sha256 {artifact.sha256[:16]}…, {artifact.file.name}"
        )
