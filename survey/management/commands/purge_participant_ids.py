"""`manage.py purge_participant_ids [SLUG] [--all] [--older-than DAYS | --expired] [--dry-run]`."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey.dataprotection import (
    DataProtectionError,
    participant_ids_purge,
    retention_period,
    study_get,
)

ACTOR = "command:purge_participant_ids"


class Command(BaseCommand):
    help = (
        "Remove the raw Prolific IDs of finished participants (the HMAC pseudonym used by exports "
        "and analyses stays), with their submission IDs (paid bonus rows and audit events keep "
        "a keyed hash). Run it once verification, approval and bonuses are done. Refuses, changing "
        "nothing, while a selected participant is still taking part or has an unpaid bonus, "
        "unless --force. Each purged study is recorded in the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="the study's slug (or --all)")
        parser.add_argument("--all", action="store_true", help="every study")
        age = parser.add_mutually_exclusive_group()
        age.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            help="only participants who finished (or entered, if they never finished) more "
            "than DAYS days ago",
        )
        age.add_argument(
            "--expired",
            action="store_true",
            help="only participants past the retention period (FVR_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="also purge participants still taking part or with a bonus not yet paid",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be purged, change nothing"
        )

    def handle(self, *args: object, **options: object) -> None:
        slug, every = options["slug"], options["all"]
        if bool(slug) == bool(every):
            raise CommandError("Name one study (SLUG) or pass --all, not both and not neither.")
        older_than = None
        if options["older_than"] is not None:
            if options["older_than"] < 0:
                raise CommandError("--older-than takes a number of days, 0 or more.")
            older_than = timedelta(days=options["older_than"])
        elif options["expired"]:
            older_than = retention_period()
        try:
            study = study_get(slug=slug) if slug else None
            result = participant_ids_purge(
                study=study,
                actor=ACTOR,
                older_than=older_than,
                force=options["force"],
                dry_run=options["dry_run"],
            )
        except DataProtectionError as error:
            raise CommandError(error.message) from error
        verb = "would be purged" if result.dry_run else "purged"
        if not result.purged:
            where = f"study '{slug}'" if slug else "any study"
            age = f" older than {older_than.days} days" if older_than is not None else ""
            self.stdout.write(f"No Prolific IDs{age} left to purge in {where}.")
            return
        for name, count in sorted(result.purged.items()):
            timed_out = result.timed_out.get(name, 0)
            note = f" ({timed_out} timed out without finishing)" if timed_out else ""
            self.stdout.write(f"{name}: {count} Prolific ID(s) {verb}{note}.")
        if result.dry_run:
            self.stdout.write("Dry run: nothing changed.")
        else:
            ids = ", ".join(f"#{event.pk}" for event in result.events)
            self.stdout.write(
                self.style.SUCCESS(f"{result.total} Prolific ID(s) purged; audit event(s) {ids}.")
            )
