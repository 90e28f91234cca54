"""The system's data for a load run: a fresh database, static files and an open demo study."""

import argparse
import os
import random
import shutil
from pathlib import Path

from benchmarks.load.server import database_recreate

SLUG = "load"


def generated_faces(dest: Path, identities: int = 60, photos: int = 2) -> Path:
    """Stand-in photos (an identity-per-folder tree of drawn images) when no real ones exist."""
    from PIL import Image, ImageDraw

    rng = random.Random(7)
    for i in range(identities):
        folder = dest / f"person_{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(photos):
            image = Image.new("RGB", (250, 250), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            for _ in range(12):
                x, y = rng.randrange(200), rng.randrange(200)
                colour = tuple(rng.randrange(256) for _ in range(3))
                draw.ellipse((x, y, x + rng.randrange(20, 80), y + rng.randrange(20, 80)), colour)
            draw.text((10, 10), f"{i}/{j}", fill=(255, 255, 255))
            image.save(folder / f"{j}.jpg", quality=90)
    return dest


def faces_root(args: argparse.Namespace) -> tuple[Path, str]:
    if args.faces:
        return args.faces, "given photos"
    lfw = Path(os.environ.get("FVR_FACE_DATA", "") or "/nonexistent") / "lfw"
    if lfw.is_dir():
        return lfw, "real photos (LFW)"
    return generated_faces(args.workdir / "faces"), "generated images"


def prepare(args: argparse.Namespace, env: dict[str, str]) -> str:
    """Fresh database, migrations, static files, and an open demo study; return its source."""
    for name in ("media", "static", "faces"):
        shutil.rmtree(args.workdir / name, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    database_recreate(args.database_url)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from reconstruction.studies.demo import demo_study_create

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    root, source = faces_root(args)
    demo_study_create(faces_root=root, slug=SLUG, per_method=args.per_method, seed=1)
    return source
