"""`manage.py delete_participant SLUG (--pid PID | --pseudonym P) --reason TEXT [--yes]`."""

import sys

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey.dataprotection import DataProtectionError, participant_delete, study_get

ACTOR = "command:delete_participant"


def _counts(deleted: dict[str, int]) -> str:
    return ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in deleted.items())


class Command(BaseCommand):
    help = (
        "Erase one participant's data in a study on their request: the participant, their "
        "assignments, responses, page visits and refused-request log rows. An audit event keeps "
        "the pseudonym, the reason and the counts (never the Prolific ID). Asks for "
        "confirmation unless --yes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument(
            "--pid",
            help="the participant's Prolific ID; '-' reads it from standard input (keeps it "
            "out of the shell history)",
        )
        who.add_argument("--pseudonym", help="the participant's pseudonym (as in exports)")
        parser.add_argument(
            "--reason", required=True, help="why (e.g. 'participant request, 2026-11-26')"
        )
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: object, **options: object) -> None:
        pid = options["pid"]
        if pid == "-":
            pid = sys.stdin.readline().strip()
            if not pid:
                raise CommandError("--pid -: no Prolific ID on standard input.")
        lookup = {"prolific_pid": pid} if pid is not None else {"pseudonym": options["pseudonym"]}
        try:
            study = study_get(slug=options["slug"])
            plan = participant_delete(
                study=study, actor=ACTOR, reason=options["reason"], dry_run=True, **lookup
            )
            if not options["yes"]:
                self.stdout.write(
                    f"Participant {plan.pseudonym} ({plan.status}) in '{plan.study}': "
                    f"{_counts(plan.deleted)} will be deleted. This cannot be undone."
                )
                try:
                    answer = input("Type 'delete' to confirm: ")
                except EOFError:
                    answer = ""
                if answer.strip() != "delete":
                    raise CommandError("Not confirmed: nothing deleted (pass --yes to skip this).")
            result = participant_delete(
                study=study, actor=ACTOR, reason=options["reason"], **lookup
            )
        except DataProtectionError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted participant {result.pseudonym} from '{result.study}': "
                f"{_counts(result.deleted)}. Audit event #{result.event.pk}."
            )
        )
        if result.bonuses_kept:
            self.stdout.write(
                f"Kept {result.bonuses_kept} Prolific bonus record(s) (payments), now unlinked "
                "and holding only the submission ID's keyed hash."
            )
        self._remind_reports(study)

    def _remind_reports(self, study: object) -> None:
        """Reports and exports written earlier still hold the pseudonym's answers."""
        if not apps.is_installed("analysis"):
            return
        runs = apps.get_model("analysis", "AnalysisRun").objects.filter(study=study)
        folders = list(runs.values_list("out_dir", flat=True))
        if folders:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(folders)} analysis report(s) written earlier contain this "
                    "participant's answers (by pseudonym): delete or regenerate them, and any "
                    "exported CSV files:"
                )
            )
            for folder in folders:
                self.stdout.write(f"  {folder}")
