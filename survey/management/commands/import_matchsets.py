"""`manage.py import_matchsets PATH [--study SLUG]`: load match sets from a manifest folder."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey.matchsets import matchsets_import


class Command(BaseCommand):
    help = (
        "Import match sets from a folder holding manifest.json and its images (format: "
        "docs/matchset-manifest.md). Everything is checked first; on any problem each one is "
        "listed and nothing is imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="folder with manifest.json (or the file)")
        parser.add_argument(
            "--study",
            metavar="SLUG",
            help="import into this existing study instead of the manifest's study",
        )

    def handle(self, *args: object, **options: object) -> None:
        report = matchsets_import(path=options["path"], study_slug=options["study"])
        if not report.ok:
            lines = "\n".join(f"  {problem}" for problem in report.problems)
            raise CommandError(
                f"{len(report.problems)} problem(s) in {report.manifest}; nothing was imported:"
                f"\n{lines}"
            )
        verb = "into new study" if report.study_created else "into study"
        methods = ", ".join(f"{method} {n}" for method, n in sorted(report.by_method.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.created} match set(s) ({methods}) {verb} "
                f"{report.study_slug!r} from {report.manifest}."
            )
        )
        if report.study_created:
            self.stdout.write("The new study is a draft: open it in the admin when it is ready.")
