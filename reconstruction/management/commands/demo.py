"""`manage.py demo`: a demo study built by the real pipeline (or, with --photos-only, from
photos alone), an admin login and links to try it."""

import dataclasses
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.urls import reverse
from django.utils.http import urlencode

from reconstruction.studies.demo import (
    DemoDataError,
    DemoPipelineConfig,
    demo_faces_root,
    demo_pipeline_study_create,
    demo_study_create,
)
from survey.models import Candidate, Study

HOST = "127.0.0.1"
ADMIN_USERNAME = "admin"
DEMO_STUDY_ID = "DEMOSTUDY"


def local_serving_problems() -> list[str]:
    """Settings that stop the development server from serving the demo over plain HTTP."""
    problems = []
    if not settings.DEBUG:
        problems.append("DEBUG is off, so static files are not served (set DJANGO_DEBUG=1)")
    if settings.SECURE_SSL_REDIRECT or settings.SESSION_COOKIE_SECURE:
        problems.append("HTTPS-only settings are on (unset DJANGO_PRODUCTION and DJANGO_SECURE)")
    if not settings.FVR_SERVE_MEDIA:
        problems.append("the face images (media) are not served (set FVR_SERVE_MEDIA=1)")
    return problems


def participant_links(study: Study, port: int, count: int = 3) -> list[str]:
    """Prolific-style entry links, each with a new random PROLIFIC_PID (a new participant)."""
    links = []
    for _ in range(count):
        params = {
            "PROLIFIC_PID": f"DEMO{secrets.token_hex(8).upper()}",
            "STUDY_ID": study.prolific_study_id or DEMO_STUDY_ID,
            "SESSION_ID": f"DEMOSESSION{secrets.token_hex(6).upper()}",
        }
        links.append(f"http://{HOST}:{port}{study.get_absolute_url()}?{urlencode(params)}")
    return links


class Command(BaseCommand):
    help = (
        "Set up a demo: apply migrations, build a demo study by running the real pipeline on "
        "a CPU-sized subset of face photos (one folder per identity, e.g. LFW): import, "
        "Eigenfaces basis, Eigenfaces attack on mobileface (F) vectors at a demo budget, "
        "dlib-resnet (F') embeddings and build_study from F''s top-5 over a gallery (minutes "
        "on 2 cores the first time, reused afterwards); or, with --photos-only, in seconds "
        "from real photos standing in for reconstructions. Then create the superuser 'admin' "
        "and print participant and admin links. --serve then runs the development server "
        "(needs DJANGO_DEBUG=1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--faces",
            metavar="PATH",
            help="photos, one sub-folder per identity (default: $FVR_FACE_DATA/lfw if it "
            "exists, else $FVR_FACE_DATA)",
        )
        parser.add_argument("--slug", default="demo", help="the demo study's slug")
        parser.add_argument(
            "--no-download",
            action="store_true",
            help="without --faces or FVR_FACE_DATA, stop instead of downloading LFW (181 MB)",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--photos-only",
            action="store_true",
            help="build the study in seconds from real photos standing in for "
            "reconstructions (no pipeline run)",
        )
        mode.add_argument(
            "--pipeline",
            action="store_true",
            help="build the study with the real reconstruction pipeline (the default)",
        )
        parser.add_argument(
            "--per-method",
            type=int,
            default=8,
            help="--photos-only: match sets per method (4 methods)",
        )
        parser.add_argument(
            "--targets",
            type=int,
            default=DemoPipelineConfig.reconstructions,
            help="pipeline: target photos reconstructed, one match set each",
        )
        parser.add_argument(
            "--iterations",
            type=int,
            default=DemoPipelineConfig.iterations,
            help="Eigenfaces iterations of 64 queries per target (paper: 2000)",
        )
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="pipeline demo on a few identities with a 20-iteration attack (tests)",
        )
        parser.add_argument("--seed", type=int, default=2022, help="seed for choosing photos")
        parser.add_argument(
            "--reset", action="store_true", help="delete and rebuild the demo study if it exists"
        )
        parser.add_argument(
            "--reset-password", action="store_true", help="give 'admin' a new password"
        )
        parser.add_argument("--serve", action="store_true", help="then run the server")
        parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1")

    def handle(self, *args: object, **options: object) -> None:
        port = options["port"]
        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port} is not a TCP port.")
        if options["serve"] and (problems := local_serving_problems()):
            raise CommandError(
                "demo --serve runs Django's development server over plain HTTP, but "
                + "; ".join(problems)
                + f". Run: DJANGO_DEBUG=1 {sys.executable} manage.py demo --serve"
            )
        self._database_ready()
        study = self._study(options)
        self._admin_login(reset=options["reset_password"], port=port)
        self.stdout.write("Participant links (each one is a new participant):")
        for link in participant_links(study, port):
            self.stdout.write(f"  {link}")
        if not options["serve"]:
            self.stdout.write("Serve it with: DJANGO_DEBUG=1 python manage.py demo --serve")
            return
        self.stdout.write(f"Serving http://{HOST}:{port}/ (Ctrl-C stops).")
        call_command("runserver", f"{HOST}:{port}", use_reloader=False)

    def _database_ready(self) -> None:
        if connection.vendor == "sqlite" and not connection.is_in_memory_db():
            # A fresh clone has no var/ folder yet, and SQLite does not create folders.
            Path(connection.settings_dict["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database ready (migrations applied).")

    def _study(self, options: dict) -> Study:
        slug = options["slug"]
        existing = Study.objects.filter(slug=slug).first()
        if existing is not None and not existing.is_demo:
            raise CommandError(f"Study {slug!r} exists and is not a demo: pick another --slug.")
        if existing is not None and not options["reset"]:
            self.stdout.write(
                f"Reusing demo study {slug!r} ({existing.match_sets.count()} match sets); "
                "--reset rebuilds it."
            )
            return existing
        try:
            root = self._faces_root(options)
            if not options["photos_only"]:
                return self._pipeline_study(root, options)
            study = demo_study_create(
                faces_root=root,
                slug=slug,
                per_method=options["per_method"],
                seed=options["seed"],
                replace=options["reset"],
            )
        except DemoDataError as error:
            raise CommandError(str(error)) from error
        present = Candidate.objects.filter(match_set__study=study, is_true=True)
        total = study.match_sets.count()
        absent = total - present.values("match_set").distinct().count()
        self.stdout.write(
            f"Built demo study {slug!r}: {total} match sets ({options['per_method']} per method, "
            f"{absent} without the target) from the photos in {root}."
        )
        return study

    def _faces_root(self, options: dict) -> Path:
        """The photos: --faces, else FVR_FACE_DATA, else LFW downloaded once into the cache."""
        if options["faces"] or settings.FVR_FACE_DATA or options["no_download"]:
            return demo_faces_root(faces=options["faces"], face_data=settings.FVR_FACE_DATA)
        from reconstruction.faces.downloads import LFW, DownloadError, archive_fetch

        cache = Path(settings.FVR_DATA_CACHE)
        self.stdout.write(
            f"No --faces or FVR_FACE_DATA: using LFW from {cache} (downloaded once, "
            f"{LFW.size / 1e6:.0f} MB, SHA-256 checked)."
        )
        try:
            return archive_fetch(LFW, cache_dir=cache, progress=True)
        except DownloadError as error:
            raise DemoDataError(str(error)) from error

    def _pipeline_study(self, root: Path, options: dict) -> Study:
        base = DemoPipelineConfig.tiny() if options["tiny"] else DemoPipelineConfig()
        if options["targets"] < 1 or options["iterations"] < 1:
            raise CommandError("--targets and --iterations must be at least 1.")
        iterations = base.iterations if options["tiny"] else options["iterations"]
        # Restarts take at most half of the budget; the rest refines the best at the low lr.
        restart_iterations = min(base.restart_iterations, iterations // (2 * base.restarts))
        if restart_iterations < 1:
            raise CommandError(f"--iterations must be at least {2 * base.restarts}.")
        config = dataclasses.replace(
            base,
            reconstructions=options["targets"],
            iterations=iterations,
            restart_iterations=restart_iterations,
            seed=options["seed"],
        )
        self.stdout.write(
            "Building the demo study with the real pipeline (first run: several minutes on "
            "2 CPU cores, reused afterwards; --photos-only takes seconds):"
        )
        from reconstruction.model_store import ModelStoreError
        from reconstruction.studies.builder import StudyBuildError

        try:
            study = demo_pipeline_study_create(
                faces_root=root,
                var_dir=Path(settings.VAR_DIR),
                slug=options["slug"],
                config=config,
                replace=options["reset"],
                progress=options["verbosity"] > 1,
                log=self._progress,
            )
        except (DemoDataError, StudyBuildError, ModelStoreError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Built demo study {study.slug!r}: {study.match_sets.count()} match sets of "
            f"Eigenfaces reconstructions from the photos in {root}."
        )
        return study

    def _progress(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _admin_login(self, *, reset: bool, port: int) -> None:
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN_USERNAME).first()
        url = f"http://{HOST}:{port}{reverse('admin:index')}"
        if user is not None and not reset:
            self.stdout.write(
                f"Admin: {url}  user {ADMIN_USERNAME!r} (its password was printed when it was "
                "created; --reset-password prints a new one)"
            )
            return
        password = secrets.token_urlsafe(12)
        if user is None:
            user_model.objects.create_superuser(
                username=ADMIN_USERNAME, email="", password=password
            )
        else:
            user.set_password(password)
            user.is_active = user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write(
            f"Admin: {url}  user {ADMIN_USERNAME!r}  password {password}  (shown only now)"
        )
