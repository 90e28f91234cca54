"""Metric 1 sweeps on LFW: Eigenfaces reconstructions against three local F' plus baselines.

Usage: ``FVR_FACE_DATA=/work/shared/data python -m benchmarks.metric1_sweep`` (options:
``--workdir`` (scratch, kept between runs), ``--targets``, ``--preset``, ``--recognizers``,
``--trials``, ``--reconstructions DIR``, ``--iterations N``, ``--prepare-only``).

Stages (each idempotent, so a second run reuses the first's work):

1. import all of LFW into a scratch SQLite database under ``--workdir`` (``var/`` and any
   ``DATABASE_URL`` are never touched) with splits ``train=0.04@5,target=0.01@2,
   gallery=0.95``: ~230 identities with ≥ 5 photos fit the Eigenfaces basis, ~57 identities
   with ≥ 2 photos are targets (one photo is reconstructed, the others stay enrolled when it
   is excluded), ~5,460 identities are distractors — enough for N = 5000;
2. embed every aligned face with each F' (stored Embedding rows: the cache);
3. fit an Eigenfaces basis (PCA) on the train split and reconstruct ``--targets`` targets
   from mobileface's vectors with ``--preset`` (``tiny`` by default: 20 iterations of 8
   candidates; the paper budget takes minutes per target on 2 cores) — or, with
   ``--reconstructions DIR``, read reconstructed 112×112 images named in
   ``DIR/manifest.csv`` (columns ``target_path,image``; ``target_path`` relative to the LFW
   root);
4. run `evaluate_topk` (K and N sweeps, photo and random baselines, both exclusion
   variants) per F' and print the headline numbers and the timing.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import time
from pathlib import Path
from typing import Any

DATASET = "lfw"
SPLITS = "train=0.04@5,target=0.01@2,gallery=0.95"
RECOGNIZERS = ["mobileface", "dlib-resnet", "faceres"]


def setup_django(workdir: Path) -> None:
    """Point Django at a scratch database and media folder under ``workdir`` and migrate."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["FVR_VAR_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ["DJANGO_MEDIA_ROOT"] = str(workdir / "media")
    # With DEBUG off the settings refuse to start without keys: random ones for this run.
    for name in ("DJANGO_SECRET_KEY", "FVR_PSEUDONYM_KEY"):
        os.environ.setdefault(name, secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def prepare(
    *,
    lfw: Path,
    recognizers: list[str],
    targets: int,
    preset: str,
    seed: int,
    iterations: int | None = None,
) -> dict[str, float]:
    """Import, embed, fit the basis and reconstruct (each skipped when already done)."""
    from reconstruction.models import FaceDataset
    from reconstruction.recognizers.embedding import dataset_embed
    from reconstruction.services import dataset_import, eigenbasis_train, reconstruct_targets

    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset = FaceDataset.objects.filter(name=DATASET, imported_at__isnull=False).first()
    if dataset is None:
        dataset_import(name=DATASET, path=lfw, splits=SPLITS, seed=seed, progress=True)
    timings["import"] = time.perf_counter() - start
    for name in recognizers:
        start = time.perf_counter()
        dataset_embed(dataset=DATASET, recognizer=name, progress=True)
        timings[f"embed {name}"] = time.perf_counter() - start
    if targets:
        start = time.perf_counter()
        basis = eigenbasis_train(
            dataset=DATASET, method="pca", preset=preset, seed=seed, progress=False
        )
        reconstruct_targets(
            dataset=DATASET,
            method="eigenfaces",
            recognizer="mobileface",
            targets=targets,
            preset=preset,
            seed=seed,
            artifact_id=basis.pk,
            progress=True,
            iterations=iterations,
        )
        timings["reconstruct"] = time.perf_counter() - start
    return timings


def import_reconstructions(folder: Path, *, method: str, recognizer: str) -> int:
    """Store reconstructed images listed in ``folder/manifest.csv`` as Reconstruction rows."""
    import hashlib

    from django.core.files.base import ContentFile

    from reconstruction.models import FaceImage, Reconstruction

    created = 0
    with (folder / "manifest.csv").open() as handle:
        for entry in csv.DictReader(handle):
            target = FaceImage.objects.get(
                dataset__name=DATASET, relative_path=entry["target_path"]
            )
            data = (folder / entry["image"]).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            row, made = Reconstruction.objects.get_or_create(
                target=target,
                method=method,
                recognizer=recognizer,
                config_hash=digest,
                seed=0,
                defaults={
                    "recognizer_sha256": "",
                    "config": {"source": str(folder)},
                    "device": "external",
                    "cosine": 0.0,
                    "queries": 0,
                    "seconds": 0.0,
                    "forward_seconds": 0.0,
                },
            )
            if made:
                row.image.save(f"{target.pk}-{digest[:12]}.png", ContentFile(data))
                created += 1
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/metric1-bench"))
    parser.add_argument("--recognizers", default=",".join(RECOGNIZERS))
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconstructions", type=Path, default=None)
    parser.add_argument(
        "--iterations", type=int, default=None, help="Eigenfaces budget instead of --preset's."
    )
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    lfw = Path(os.environ.get("FVR_FACE_DATA", "")) / "lfw"
    if not lfw.is_dir():
        raise SystemExit("set FVR_FACE_DATA to a folder containing lfw/")
    recognizers = [r for r in args.recognizers.split(",") if r]
    setup_django(args.workdir)
    timings = prepare(
        lfw=lfw,
        recognizers=recognizers,
        targets=0 if args.reconstructions else args.targets,
        preset=args.preset,
        seed=args.seed,
        iterations=args.iterations,
    )
    if args.reconstructions:
        import_reconstructions(args.reconstructions, method="eigenfaces", recognizer="mobileface")
    for stage, seconds in timings.items():
        print(f"{stage}: {seconds:.1f} s")
    if args.prepare_only:
        return
    from reconstruction.metric1 import report
    from reconstruction.services import topk_evaluate

    out = args.workdir / "results"
    all_rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in recognizers:
        start = time.perf_counter()
        run = topk_evaluate(
            dataset=DATASET,
            recognizer=name,
            out_dir=out,
            trials=args.trials,
            seed=args.seed,
            include_source=True,
            cache_dir=args.workdir / "cache",
        )
        all_rows += run.results["rows"]
        print(f"{name}: {run.queries} queries, {time.perf_counter() - start:.1f} s")
        for group in ("eigenfaces", "photo", "random"):
            tpr, fpr = run.reference_rate(group), run.reference_rate(group, "fpr")
            if tpr is not None:
                print(f"  {group:10s} tpr {100 * tpr:5.1f}%  fpr {100 * fpr:5.1f}%  (N=1000, K=25)")
    rows = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in all_rows]
    report.write_csv(rows, out / "metric1_all.csv")
    report.write_markdown(rows, out / "metric1_all.md", title="Metric 1 on LFW (all F')")
    report.write_plots(rows, out, stem="metric1_all")
    print(f"sweeps: {time.perf_counter() - started:.1f} s; files in {out}")


if __name__ == "__main__":
    main()
