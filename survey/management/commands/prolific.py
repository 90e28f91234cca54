"""`manage.py prolific SLUG list|verify|approve|reject|bonus|return`: Prolific operations."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from survey import prolific
from survey.models import Participant, Study, pseudonymise

ACTOR = "command:prolific"


class Command(BaseCommand):
    help = (
        "Operate a study's submissions on Prolific (token from FVR_PROLIFIC_TOKEN): list them, "
        "verify arrivals' SESSION_IDs (stored on the participant; analyses leave out the "
        "unverified), approve completed ones in bulk (unverified ones are verified first; those "
        "that fail, and flagged ones, are left out and named), reject one (allowed category, "
        "message of 100+ characters), pay a bonus (at most once per submission, at most "
        "FVR_MAX_BONUS_PENCE), or request a return (no consent). Participants are named by "
        "pseudonym or Prolific ID. Every action is written to the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")
        sub = parser.add_subparsers(dest="operation", required=True)
        listing = sub.add_parser("list", help="list the study's submissions on Prolific")
        listing.add_argument(
            "--status", help="only this status, e.g. 'AWAITING REVIEW' (or AWAITING_REVIEW)"
        )
        verify = sub.add_parser("verify", help="check SESSION_IDs against Prolific")
        verify.add_argument(
            "participants",
            nargs="*",
            help="pseudonyms or Prolific IDs (default: every finished participant not yet "
            "verified, checked against one read of the study's submission list)",
        )
        approve = sub.add_parser("approve", help="approve completed participants in bulk")
        approve.add_argument("participants", nargs="*", help="pseudonyms or Prolific IDs")
        approve.add_argument(
            "--all-completed", action="store_true", help="every completed participant"
        )
        reject = sub.add_parser("reject", help="reject one submission")
        reject.add_argument("participants", nargs="*", help="pseudonyms or Prolific IDs")
        reject.add_argument(
            "--failed-attention",
            action="store_true",
            help="every participant who failed the attention checks (FAILED_CHECK)",
        )
        reject.add_argument(
            "--category",
            default="FAILED_CHECK",
            choices=prolific.REJECTION_CATEGORIES,
            help="Prolific's rejection category (default FAILED_CHECK)",
        )
        reject.add_argument(
            "--message",
            default=prolific.FAILED_CHECK_MESSAGE,
            help="what the participant reads (at least 100 characters)",
        )
        bonus = sub.add_parser("bonus", help="pay one participant a bonus (once)")
        bonus.add_argument("participant", help="pseudonym or Prolific ID")
        bonus.add_argument("--amount", type=int, required=True, help="in pence/cents (150 = 1.50)")
        bonus.add_argument("--reason", default="")
        ret = sub.add_parser("return", help="ask participants to return their submission")
        ret.add_argument("participants", nargs="*", help="pseudonyms or Prolific IDs")
        ret.add_argument(
            "--no-consent", action="store_true", help="every participant who declined consent"
        )
        ret.add_argument("--reason", action="append", help="a reason (repeatable)")

    def handle(self, *args: object, **options: object) -> None:
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            raise CommandError(f"No study with slug {options['slug']!r}.")
        operation = options["operation"]
        try:
            getattr(self, f"_{operation}")(study, options)
        except prolific.ProlificError as exc:
            raise CommandError(exc.message) from exc

    def _participants(self, study: Study, names: list[str]) -> list[Participant]:
        found = []
        for name in names:
            p = Participant.objects.filter(study=study, pseudonym__in=[name, pseudonymise(name)])
            if not p:
                raise CommandError(f"No participant {name!r} in study {study.slug!r}.")
            found.append(p[0])
        return found

    def _list(self, study: Study, options: dict) -> None:
        rows = prolific.submissions_list(study=study, status=options["status"])
        known = {p.session_id: p.pseudonym for p in Participant.objects.filter(study=study)}
        for row in rows:
            sid = row.get("id", "")
            self.stdout.write(
                f"{sid}  {row.get('status', ''):<16} {known.get(sid, '(not arrived here)')}"
            )
        self.stdout.write(f"{len(rows)} submission(s).")

    def _verify(self, study: Study, options: dict) -> None:
        if options["participants"]:
            results = [
                prolific.submission_verify(participant=p, actor=ACTOR)
                for p in self._participants(study, options["participants"])
            ]
        else:
            results = prolific.submissions_verify(study=study, actor=ACTOR)
        bad = 0
        for result in results:
            state = "ok" if result.ok else "MISMATCH: " + "; ".join(result.problems)
            bad += not result.ok
            self.stdout.write(f"{result.participant.pseudonym}  {result.submission_id}  {state}")
        self.stdout.write(f"{len(results) - bad} verified, {bad} not.")
        if not options["participants"]:
            earlier = Participant.objects.filter(study=study, session_verified_at__isnull=False)
            unverified = Participant.objects.filter(
                study=study, session_verified_at__isnull=True
            ).exclude(status=Participant.Status.ACTIVE)
            self.stdout.write(
                f"Study {study.slug!r}: {earlier.count()} participant(s) verified in all, "
                f"{unverified.count()} finished participant(s) unverified (left out of "
                "approval and, by default, of analyses)."
            )

    def _approve(self, study: Study, options: dict) -> None:
        if options["all_completed"]:
            people = list(Participant.objects.filter(study=study, status="completed"))
        else:
            people = self._participants(study, options["participants"])
        approval = prolific.submissions_approve(study=study, participants=people, actor=ACTOR)
        self.stdout.write(f"Asked Prolific to approve {len(approval.approved)} submission(s).")
        for pseudonym, reason in approval.left_out.items():
            self.stdout.write(f"Left out {pseudonym}: {reason}")

    def _reject(self, study: Study, options: dict) -> None:
        if options["failed_attention"]:
            people = list(
                Participant.objects.filter(study=study, status=Participant.Status.FAILED_ATTENTION)
            )
        else:
            people = self._participants(study, options["participants"])
        if not people:
            raise CommandError("No participants to reject.")
        prolific.rejection_validate(category=options["category"], message=options["message"])
        for p in people:
            prolific.submission_reject(
                participant=p,
                category=options["category"],
                message=options["message"],
                actor=ACTOR,
            )
            self.stdout.write(f"Rejected {p.pseudonym} ({options['category']}).")

    def _bonus(self, study: Study, options: dict) -> None:
        (p,) = self._participants(study, [options["participant"]])
        bonus = prolific.bonus_pay(
            participant=p, amount_pence=options["amount"], reason=options["reason"], actor=ACTOR
        )
        self.stdout.write(
            f"Paid a bonus of {bonus.amount_pence} to {p.pseudonym} "
            f"(Prolific bonus {bonus.prolific_bonus_id})."
        )

    def _return(self, study: Study, options: dict) -> None:
        if options["no_consent"]:
            people = list(
                Participant.objects.filter(study=study, status=Participant.Status.NO_CONSENT)
            )
        else:
            people = self._participants(study, options["participants"])
        if not people:
            raise CommandError("No participants to ask for a return.")
        for p in people:
            prolific.submission_request_return(
                participant=p, reasons=options["reason"], actor=ACTOR
            )
            self.stdout.write(f"Asked {p.pseudonym} to return their submission.")
