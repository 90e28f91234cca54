"""`manage.py time_out_participants [SLUG]`: mark participants past the maximum time TIMED_OUT."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey.models import Study
from survey.services import participants_time_out


class Command(BaseCommand):
    help = (
        "Mark active participants whose study's maximum minutes since entry have passed as "
        "timed out (as Prolific times out their submissions), in one study or in all. They "
        "stop holding a place and counting for balance as soon as their time is up anyway; "
        "arrivals, question assignment and their own requests mark them as they go, so this "
        "only brings the stored statuses up to date (e.g. before an export or from cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="the study's slug (default: every study)")

    def handle(self, *args: object, **options: object) -> None:
        study = None
        if options["slug"]:
            study = Study.objects.filter(slug=options["slug"]).first()
            if study is None:
                raise CommandError(f"No study with slug {options['slug']!r}; check the slug.")
        marked = participants_time_out(study=study)
        where = f"study {study.slug!r}" if study else "all studies"
        self.stdout.write(f"{marked} participant(s) timed out in {where}.")
