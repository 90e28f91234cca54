"""Delete an Amazon Rekognition collection made for a Metric 1 gallery."""

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Delete the Rekognition collection COLLECTION_ID and every face indexed in it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("collection_id")
        parser.add_argument("--region", default=None)

    def handle(self, *args: object, **options: object) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from reconstruction.metric1.engines.rekognition import RekognitionEngine

        try:
            engine = RekognitionEngine(
                collection_id=options["collection_id"], region=options["region"]
            )
            deleted = engine.cleanup()
        except (ValueError, ClientError, BotoCoreError) as exc:
            raise CommandError(str(exc)) from exc
        if deleted:
            self.stdout.write(f"Deleted collection {options['collection_id']}.")
        else:
            self.stdout.write(f"No collection {options['collection_id']}: nothing to delete.")
