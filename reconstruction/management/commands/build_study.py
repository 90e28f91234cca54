"""Build a draft survey study from reconstructions: F''s top-5 gallery faces per target."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconstruction.services import study_build
from reconstruction.studies.builder import MATCH_SET_MODES, StudyBuildError


class Command(BaseCommand):
    help = (
        "Create a draft study: for each --methods method, pick --per-method reconstructions "
        "made with --recognizer (F) of target images of --dataset (the same target identities "
        "across methods where possible, chosen by --seed), enrol the dataset's gallery and "
        "target identities in --second (F'), and make each reconstruction's top-5 in F' a "
        "match set (images rendered once to web size), with provenance. By default the top-5 "
        "is Metric 1's image-level one, as in the paper (several photos of one person may "
        "appear); --match-sets identity takes 5 distinct identities instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--title", required=True)
        parser.add_argument("--description", default="", help="Shown on the consent page.")
        parser.add_argument("--dataset", required=True, help="Imported dataset name.")
        parser.add_argument("--recognizer", required=True, help="F, whose vectors were inverted.")
        parser.add_argument("--second", required=True, help="F', the engine that searches.")
        parser.add_argument(
            "--methods",
            default="eigenfaces,nbnet,naive,vec2face",
            help="Comma-separated FVR methods (default: all four).",
        )
        parser.add_argument("--per-method", type=int, default=8, help="Match sets per method.")
        parser.add_argument(
            "--participants",
            type=int,
            default=200,
            metavar="N",
            help="planned analysed participants, for the power printed after the build "
            "(default: 200, as in the paper)",
        )
        parser.add_argument(
            "--gallery-identities",
            type=int,
            default=None,
            metavar="N",
            help="Identities enrolled in F' (targets always included; default: all of the "
            "gallery and target splits).",
        )
        parser.add_argument("--seed", type=int, default=0)
        exclusion = parser.add_mutually_exclusive_group()
        exclusion.add_argument(
            "--exclude-source",
            dest="exclude_source",
            action="store_true",
            default=True,
            help="Exclude each reconstruction's source photo from the search (default).",
        )
        exclusion.add_argument(
            "--include-source",
            dest="exclude_source",
            action="store_false",
            help="Leave the source photo in the gallery (the upper-bound variant).",
        )
        parser.add_argument(
            "--match-sets",
            choices=sorted(MATCH_SET_MODES),
            default="image",
            help="image: Metric 1's top-5 gallery images, the paper's (default); identity: "
            "each identity's best image, 5 distinct identities. Recorded in each match set's "
            'provenance as "match_sets".',
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        methods = [m.strip() for m in options["methods"].split(",") if m.strip()]
        if options["participants"] < 3:
            raise CommandError("--participants: plan at least 3 participants.")
        try:
            summary = study_build(
                slug=options["slug"],
                title=options["title"],
                description=options["description"],
                dataset=options["dataset"],
                recognizer=options["recognizer"],
                second=options["second"],
                methods=methods,
                per_method=options["per_method"],
                gallery_identities=options["gallery_identities"],
                seed=options["seed"],
                exclude_source=options["exclude_source"],
                match_sets=options["match_sets"],
                progress=not options["no_progress"],
            )
        except StudyBuildError as exc:
            raise CommandError(str(exc)) from exc
        per = ", ".join(f"{m} {n}" for m, n in summary.by_method.items())
        total = summary.target_present + summary.target_absent
        self.stdout.write(
            f"Built draft study {summary.study_slug!r}: {total} match sets ({per}); target "
            f"among the top 5 in {summary.target_present}, absent in {summary.target_absent}; "
            f"gallery {summary.gallery_identities} identities / {summary.gallery_images} "
            f"images in {options['second']}; {options['match_sets']}-level match sets; "
            + ("Latin square design" if summary.latin_square else "balanced pools")
            + f"; {summary.seconds:.1f} s"
        )
        self._power(summary.by_method, options["participants"])

    def _power(self, by_method: dict[str, int], participants: int) -> None:
        """What the study can detect with these faces and the planned participants."""
        from analysis.power import planning_lines  # pure statistics; no torch, no models

        faces = min(by_method.values())
        lines, bottleneck = planning_lines(
            n_participants=participants,
            faces_per_method=max(faces, 2),
            questions_per_method=min(5, faces),
        )
        *plain, last = lines
        for line in plain:
            self.stdout.write(line)
        self.stdout.write(self.style.WARNING(last) if bottleneck else last)
