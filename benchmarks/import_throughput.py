"""Import throughput: `import_faces` on LFW into a scratch SQLite database and media folder.

Usage: ``FVR_FACE_DATA=/work/shared/data python benchmarks/import_throughput.py``
(options: ``--identities N`` first N identity folders by name, ``--min-images M``).

Prints images/s of the whole import (read, SHA-256, decode, detect, landmarks, warp, PNG
encode, storage, database), mean ms per image for each stage, the no-face rate, and the
mean distance of the fitted 5 points from the ArcFace template at 112×112. The models are
loaded before the clock starts; the scratch folder is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=150)
    parser.add_argument("--min-images", type=int, default=1)
    args = parser.parse_args()
    data = Path(os.environ.get("FVR_FACE_DATA", ROOT.parent / "shared" / "data")) / "lfw"
    if not data.is_dir():
        sys.exit(f"LFW not found at {data}: set FVR_FACE_DATA to a folder containing lfw/")

    with tempfile.TemporaryDirectory(prefix="fvr-import-") as scratch:
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch}/db.sqlite3"
        os.environ["DJANGO_MEDIA_ROOT"] = f"{scratch}/media"
        # With DEBUG off the settings refuse to start without keys: random ones for this run.
        for name in ("DJANGO_SECRET_KEY", "FVR_PSEUDONYM_KEY"):
            os.environ.setdefault(name, secrets.token_urlsafe(50))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        import numpy as np
        from django.core.management import call_command

        from reconstruction.faces import alignment
        from reconstruction.models import FaceImage
        from reconstruction.services import dataset_import

        call_command("migrate", verbosity=0)
        alignment.load_models()
        start = time.perf_counter()
        summary = dataset_import(
            name="lfw-bench",
            path=data,
            limit_identities=args.identities,
            min_images=args.min_images,
            progress=False,
        )
        wall = time.perf_counter() - start
        processed = summary.processed
        residuals = [
            np.linalg.norm(
                alignment.apply_transform(
                    alignment.similarity_transform(points, alignment.ARCFACE_TEMPLATE), points
                )
                - alignment.ARCFACE_TEMPLATE,
                axis=1,
            ).mean()
            for points in (
                np.array(p) for p in FaceImage.objects.ok().values_list("landmarks", flat=True)
            )
        ]
        print(f"LFW {summary.identities} identities, {processed} images, {wall:.1f} s")
        print(f"throughput: {processed / wall:.1f} images/s ({1000 * wall / processed:.1f} ms/img)")
        for stage in ("detect", "landmarks", "warp", "store"):
            total = summary.stage_ms.get(stage, 0.0)
            print(f"  {stage:<10} {total / processed:6.1f} ms per image")
        no_face = len(summary.no_face)
        print(f"no face: {no_face}/{processed} = {100 * no_face / processed:.2f}%")
        print(f"unreadable: {len(summary.unreadable)}")
        print(
            f"5-point fit residual at 112×112: mean {np.mean(residuals):.2f} px, "
            f"95th percentile {np.percentile(residuals, 95):.2f} px"
        )
        for path in summary.no_face[:10]:
            print(f"  no face: {path}")


if __name__ == "__main__":
    main()
