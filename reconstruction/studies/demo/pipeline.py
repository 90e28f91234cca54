"""The demo study built by the real pipeline (``manage.py demo``, the default).

A demo preset (`DemoPipelineConfig`) cut to a few minutes on 2 CPU cores and recorded as such
in every match set's provenance and in the study's description: a subset of the given faces
(target identities with 3 photos, gallery distractors with 1, and reconstructor-training
identities with 2, imported as a separate dataset; symlinks under ``FVR_VAR_DIR/demo-faces``)
is imported and aligned, an Eigenfaces basis is fitted by PCA on the training identities, a
few target photos are reconstructed from their mobileface (F) vectors by the Eigenfaces
black-box attack at a reduced budget (240 iterations × 64 queries instead of the paper's
2000), the gallery is embedded with dlib-resnet (F'), and `reconstruction.services.study_build`
makes each reconstruction's top-5 in dlib over the gallery (source photo excluded) a match
set. Only Eigenfaces is run: NBNet, Naive and Vec2Face must be trained first (hours on a GPU
at the paper's scale), so the demo study has one method and its pages say so. Every step is
idempotent: a second run reuses the import, embeddings, basis and reconstructions. torch is
imported only when the pipeline runs.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconstruction.studies.demo.photos import (
    DEMO_CODES,
    DemoDataError,
    demo_study_delete,
    face_photos,
)
from survey.models import FvrMethod, Study
from survey.services import study_set_status

PAPER_EIGENFACES_ITERATIONS = 2000  # Razzhigaev et al. / Wenger et al.: 2000 × 64 queries


@dataclass(frozen=True)
class DemoPipelineConfig:
    """The demo preset of the real pipeline: sizes and budgets cut to fit a few minutes on
    2 CPU cores (the paper's are far larger; every cut is recorded in the match sets)."""

    targets: int = 40  # identities with 3 photos: one attacked, two in F''s gallery
    train: int = 150  # identities with 2 photos for the Eigenfaces basis (never targets)
    distractors: int = 200  # gallery identities with 1 photo
    reconstructions: int = 6  # target photos attacked (= match sets; 5 questions each)
    iterations: int = 240  # Eigenfaces iterations of `batch_size` queries (paper: 2000)
    restarts: int = 2
    restart_iterations: int = 40
    batch_size: int = 64
    recognizer: str = "mobileface"  # F, whose vectors are inverted
    second: str = "dlib-resnet"  # F', the engine that searches the gallery
    seed: int = 2022
    name: str = "demo"

    @classmethod
    def tiny(cls) -> DemoPipelineConfig:
        """A few identities and a 20-iteration attack: tests."""
        return cls(
            targets=3,
            train=4,
            distractors=4,
            reconstructions=2,
            iterations=20,
            restarts=2,
            restart_iterations=5,
            batch_size=8,
            name="tiny",
        )

    def preset_record(self) -> dict:
        """The preset as recorded in each match set's provenance (shown in the admin)."""
        return {
            "demo_preset": {
                "name": self.name,
                "note": (
                    "demo preset: a CPU-sized run, not the paper's settings — Eigenfaces "
                    f"{self.iterations} iterations × {self.batch_size} queries (paper "
                    f"{PAPER_EIGENFACES_ITERATIONS} × 64), PCA basis on {self.train} identities, "
                    f"gallery of {self.targets + self.distractors} identities"
                ),
                "eigenfaces_iterations": self.iterations,
                "paper_eigenfaces_iterations": PAPER_EIGENFACES_ITERATIONS,
                "batch_size": self.batch_size,
                "restarts": self.restarts,
                "restart_iterations": self.restart_iterations,
                "basis": "pca",
                "train_identities": self.train,
                "gallery_identities": self.targets + self.distractors,
            }
        }


def demo_subset_plan(
    *, faces_root: Path, targets: int, train: int, distractors: int, seed: int
) -> dict[str, list[Path]]:
    """Identity → photos of a demo subset: targets get 3 photos, train 2, distractors 1."""
    folders = face_photos(faces_root)
    rng = random.Random(seed)
    three = sorted(n for n, photos in folders.items() if len(photos) >= 3)
    if len(three) < targets:
        raise DemoDataError(
            f"{faces_root} has {len(three)} identities with 3+ photos; the demo needs {targets}."
        )
    chosen = dict.fromkeys(rng.sample(three, targets), 3)
    two = sorted(n for n, photos in folders.items() if len(photos) >= 2 and n not in chosen)
    if len(two) < train:
        raise DemoDataError(
            f"{faces_root} has {len(two)} more identities with 2+ photos; the demo needs {train}."
        )
    chosen |= dict.fromkeys(rng.sample(two, train), 2)
    rest = sorted(n for n in folders if n not in chosen)
    if len(rest) < distractors:
        raise DemoDataError(
            f"{faces_root} has {len(rest)} more identities; the demo needs {distractors}."
        )
    chosen |= dict.fromkeys(rng.sample(rest, distractors), 1)
    return {
        name: sorted(rng.sample(folders[name], count)) for name, count in sorted(chosen.items())
    }


def demo_subset_write(*, plan: dict[str, list[Path]], dest: Path) -> Path:
    """Lay a subset plan out as an identity-per-folder tree of symlinks (idempotent)."""
    for name, photos in plan.items():
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            link = folder / photo.name
            if not link.is_symlink() and not link.exists():
                link.symlink_to(photo.resolve())
    return dest


def _demo_splits(targets: int, distractors: int) -> str:
    """The import's split rule that puts 3-photo folders in target, the rest in gallery."""
    t = targets / (targets + distractors)
    return f"target={t:.12f}@3,gallery={1 - t:.12f}"


def demo_pipeline_study_create(
    *,
    faces_root: Path,
    var_dir: Path,
    slug: str,
    config: DemoPipelineConfig = DemoPipelineConfig(),
    replace: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> Study:
    """Run import → Eigenfaces basis → Eigenfaces attack → embed F' → build_study on a subset
    (the demo preset); open the study.

    The reconstructor's training identities are imported as their own dataset
    (``<name>-train``, all in the train split) so that F' only embeds the photos a gallery
    can hold; F embeds each attacked photo when it is attacked.
    """
    from reconstruction.recognizers.embedding import dataset_embed
    from reconstruction.services import eigenbasis_train

    existing = Study.objects.filter(slug=slug).first()
    if existing is not None and not (replace and existing.is_demo):
        raise DemoDataError(f"Study {slug!r} already exists.")
    step = _step_logger(log)
    plan = demo_subset_plan(
        faces_root=faces_root,
        targets=config.targets,
        train=config.train,
        distractors=config.distractors,
        seed=config.seed,
    )
    name = _demo_dataset_name(plan)
    _demo_subset_import(
        plan=plan,
        name=name,
        folder=Path(var_dir) / "demo-faces",
        faces_root=faces_root,
        config=config,
        progress=progress,
        step=step,
    )
    basis = eigenbasis_train(
        dataset=f"{name}-train", method="pca", seed=config.seed, progress=progress
    )  # paper-sized PCA: 1024 directions, fewer from the data on a small split
    step(f"2/5 Eigenfaces basis #{basis.pk}: PCA on {basis.n_images} training faces")
    count = _demo_reconstruct(name=name, basis=basis, config=config, step=step)
    embedded = dataset_embed(dataset=name, recognizer=config.second, progress=progress)
    step(
        f"4/5 embed the gallery with {config.second} (F'): {embedded.computed} computed, "
        f"{embedded.unchanged} reused"
    )
    if existing is not None:
        demo_study_delete(study=existing)
    _demo_study_build(
        slug=slug, name=name, count=count, config=config, progress=progress, step=step
    )
    study = Study.objects.get(slug=slug)
    study.accept_any_ids = True  # as demo_study_create: a demo is tried with made-up IDs
    study.save(update_fields=["accept_any_ids"])
    return study_set_status(study=study, status=Study.Status.OPEN)


def _step_logger(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log` with the seconds since the demo started in front of each message."""
    started = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    return step


def _demo_dataset_name(plan: dict[str, list[Path]]) -> str:
    """The demo dataset's name: a hash of the subset, so a new subset is a new dataset."""
    key = hashlib.sha256(
        "\n".join(f"{n}:{','.join(p.name for p in ps)}" for n, ps in plan.items()).encode()
    ).hexdigest()[:10]
    return f"demo-{key}"


def _demo_subset_import(
    *,
    plan: dict[str, list[Path]],
    name: str,
    folder: Path,
    faces_root: Path,
    config: DemoPipelineConfig,
    progress: bool,
    step: Callable[[str], None],
) -> None:
    """Step 1: import the training identities as ``<name>-train``, the rest as ``<name>``."""
    from reconstruction.services import dataset_import

    training = {n: photos for n, photos in plan.items() if len(photos) == 2}
    attacked_side = {n: photos for n, photos in plan.items() if n not in training}
    photos = sum(len(p) for p in plan.values())
    step(f"1/5 import {photos} photos of {len(plan)} identities from {faces_root}")
    for dataset, subset, splits in (
        (f"{name}-train", training, "train=1"),
        (name, attacked_side, _demo_splits(config.targets, config.distractors)),
    ):
        summary = dataset_import(
            name=dataset,
            path=demo_subset_write(plan=subset, dest=folder / dataset),
            splits=splits,
            seed=config.seed,
            progress=progress,
        )
        step(
            f"    {dataset}: {summary.ok} faces aligned ({summary.processed} new, "
            f"{summary.unchanged} reused, {len(summary.no_face)} without a face)"
        )


def _demo_attack_targets(*, name: str, config: DemoPipelineConfig) -> dict[str, list[Any]]:
    """Identity → its aligned target photos, for the identities drawn to be attacked."""
    from reconstruction.models import FaceImage, Split

    targets = list(
        FaceImage.objects.ok()
        .filter(dataset__name=name, identity__split=Split.TARGET)
        .select_related("identity")
        .order_by("identity__name", "relative_path")
    )
    by_identity: dict[str, list] = {}
    for image in targets:
        by_identity.setdefault(image.identity.name, []).append(image)
    # The attacked photo needs another photo of the person in the gallery to be findable.
    findable = sorted(n for n, images in by_identity.items() if len(images) >= 2)
    count = min(config.reconstructions, len(findable))
    if count == 0:
        raise DemoDataError("no target identity kept two aligned photos: use more targets")
    attacked = random.Random(config.seed).sample(findable, count)
    return {identity: by_identity[identity] for identity in sorted(attacked)}


def _demo_reconstruct(
    *, name: str, basis: Any, config: DemoPipelineConfig, step: Callable[[str], None]
) -> int:
    """Step 3: the Eigenfaces attack on one photo of each drawn target; how many."""
    from reconstruction.methods.eigenfaces import EigenfacesConfig
    from reconstruction.services import reconstruction_create

    attacked = _demo_attack_targets(name=name, config=config)
    count = len(attacked)
    eigen = EigenfacesConfig(
        batch_size=config.batch_size,
        iterations=config.iterations,
        restarts=config.restarts,
        restart_iterations=config.restart_iterations,
    )
    step(
        f"3/5 reconstruct {count} target photos from {config.recognizer} vectors with "
        f"Eigenfaces (demo preset: {config.iterations} iterations × {config.batch_size} "
        f"queries; the paper uses {PAPER_EIGENFACES_ITERATIONS})"
    )
    for i, (identity, images) in enumerate(attacked.items(), start=1):
        tick = time.perf_counter()
        row, created = reconstruction_create(
            target=images[0],
            method="eigenfaces",
            recognizer=config.recognizer,
            config=eigen,
            seed=config.seed,
            artifact=basis,
            progress=False,
        )
        state = f"{time.perf_counter() - tick:.1f} s" if created else "reused"
        step(f"    {i}/{count} {identity}: cosine {row.cosine:.3f} in F ({state})")
    return count


def _demo_description(config: DemoPipelineConfig) -> str:
    """The study's description: what was run, and how the demo preset differs from the paper."""
    gallery_size = config.targets + config.distractors
    return (
        f"A demo of the study run on a CPU with a demo preset ({config.name}), not the paper's "
        "settings. Each face to match was reconstructed by the Eigenfaces black-box attack "
        f"from the {config.recognizer} feature vector of a real photo (Labeled Faces in the "
        f"Wild), with {config.iterations} × {config.batch_size} queries (the paper uses "
        f"{PAPER_EIGENFACES_ITERATIONS} iterations, so these faces are rougher). The five "
        f"photos beside it are the people a second recognizer ({config.second}) found "
        f"closest in a gallery of about {gallery_size} people; sometimes the true person is "
        "not among them. Only the Eigenfaces method is shown: the other three methods need "
        "networks trained on a GPU."
    )


def _demo_study_build(
    *,
    slug: str,
    name: str,
    count: int,
    config: DemoPipelineConfig,
    progress: bool,
    step: Callable[[str], None],
) -> None:
    """Step 5: build_study on the demo dataset, one match set per reconstruction."""
    from reconstruction.services import study_build

    built = study_build(
        slug=slug,
        title="Demo: can you spot the same person?",
        description=_demo_description(config),
        dataset=name,
        recognizer=config.recognizer,
        second=config.second,
        methods=[FvrMethod.EIGENFACES],
        per_method=count,
        seed=config.seed,
        is_demo=True,
        codes=DEMO_CODES,
        progress=progress,
        provenance_extra=config.preset_record(),
    )
    step(
        f"5/5 built {sum(built.by_method.values())} match sets from {config.second}'s top 5: "
        f"the target is among them in {built.target_present}, absent in "
        f"{built.target_absent}; gallery {built.gallery_identities} identities / "
        f"{built.gallery_images} photos"
    )
