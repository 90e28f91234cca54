"""The demo study, built by the real pipeline (the default) or from photos alone.

Real pipeline (`demo_pipeline_study_create`, ``manage.py demo``), with a demo preset
(`DemoPipelineConfig`) cut to a few minutes on 2 CPU cores and recorded as such in every
match set's provenance and in the study's description: a subset of the given faces (target
identities with 3 photos, gallery distractors with 1, and reconstructor-training identities
with 2, imported as a separate dataset; symlinks under ``FVR_VAR_DIR/demo-faces``) is
imported and aligned, an Eigenfaces basis is fitted by PCA on the training identities, a few
target photos are reconstructed from their mobileface (F) vectors by the Eigenfaces black-box
attack at a reduced budget (240 iterations × 64 queries instead of the paper's 2000), the
gallery is embedded with dlib-resnet (F'), and `reconstruction.services.study_build` makes
each reconstruction's top-5 in dlib over the gallery (source photo excluded) a match set.
Only Eigenfaces is run: NBNet, Naive and Vec2Face must be trained first (hours on a GPU at
the paper's scale), so the demo study has one method and its pages say so. Every step is
idempotent: a second run reuses the import, embeddings, basis and reconstructions.

Photos only (`demo_study_create`, ``--photos-only``, ~10 s): for each match set a target
identity with at least two photos is drawn: one photo is the query, another photo of the
same person is among the K candidates (about 1 in 5 match sets leave the target out, so
"none of these" is sometimes right).
"""

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from survey.matchsets import (
    PHOTO_SUFFIXES,
    CandidateInput,
    match_set_create,
    storage_delete,
    stored_names,
)
from survey.models import FvrMethod, MatchSet, Participant, Study
from survey.services import study_set_status

DEMO_K = 5
DEMO_CODES = {
    "completion_code": "DEMODONE",
    "failed_attention_code": "DEMOFAIL",
    "no_consent_code": "DEMONOCONSENT",
}


class DemoDataError(ValueError):
    """The face photo folder cannot make a demo study."""


def demo_faces_root(*, faces: str | None, face_data: str) -> Path:
    """The identity-per-folder photo root: `faces`, else FVR_FACE_DATA/lfw, else FVR_FACE_DATA."""
    if faces:
        root = Path(faces).expanduser()
        if not root.is_dir():
            raise DemoDataError(f"--faces {root} is not a folder.")
        return root
    if face_data:
        root = Path(face_data).expanduser()
        if (root / "lfw").is_dir():
            return root / "lfw"
        if root.is_dir():
            return root
        raise DemoDataError(f"FVR_FACE_DATA={face_data} is not a folder.")
    raise DemoDataError(
        "No face photos: pass --faces PATH (one sub-folder of photos per identity, as in LFW) "
        "or set FVR_FACE_DATA to such a folder (or to one that contains lfw/)."
    )


def face_folders(root: Path) -> dict[str, list[Path]]:
    """Identity → its photos, from an identity-per-folder tree (sorted; hidden files skipped)."""
    folders = {}
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        photos = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in PHOTO_SUFFIXES
        )
        if photos:
            folders[folder.name] = photos
    return folders


@dataclass(frozen=True)
class DemoMatchSetPlan:
    """One demo match set: a photo of the target and K candidates (another photo of it, or not)."""

    key: str
    method: str
    target_identity: str
    query: Path
    candidates: tuple[CandidateInput, ...]

    @property
    def target_present(self) -> bool:
        return any(c.is_true for c in self.candidates)


def demo_plan(*, faces_root: Path, per_method: int, seed: int) -> list[DemoMatchSetPlan]:
    """Choose each demo match set's photos reproducibly (database-free)."""
    if per_method < 1:
        raise DemoDataError("--per-method must be at least 1.")
    folders = face_folders(faces_root)
    eligible = [name for name, photos in folders.items() if len(photos) >= 2]
    if not eligible or len(folders) < DEMO_K + 1:
        raise DemoDataError(
            f"{faces_root} needs at least {DEMO_K + 1} identity folders, one of them with 2 or "
            f"more photos; it has {len(folders)} identities, {len(eligible)} with 2+ photos."
        )
    rng = random.Random(seed)
    total = per_method * len(FvrMethod.values)
    # Distinct targets while they last; a small dataset reuses them.
    targets = rng.sample(eligible, min(total, len(eligible)))
    targets += [rng.choice(eligible) for _ in range(total - len(targets))]
    names = list(folders)
    plans = []
    for m, method in enumerate(FvrMethod.values):
        absent = set(rng.sample(range(per_method), round(per_method / 5)))
        for i in range(per_method):
            target = targets[m * per_method + i]
            query, other_photo = rng.sample(folders[target], 2)
            present = i not in absent
            n_others = DEMO_K - 1 if present else DEMO_K
            others = rng.sample([n for n in names if n != target], n_others)
            entries = [(name, rng.choice(folders[name]), False) for name in others]
            if present:
                entries.insert(rng.randrange(DEMO_K), (target, other_photo, True))
            candidates = tuple(
                CandidateInput(rank=rank, identity=name, image=photo, is_true=is_true)
                for rank, (name, photo, is_true) in enumerate(entries, start=1)
            )
            plans.append(
                DemoMatchSetPlan(
                    key=f"demo-{method}-{i + 1:02d}",
                    method=method,
                    target_identity=target,
                    query=query,
                    candidates=candidates,
                )
            )
    return plans


@transaction.atomic
def demo_study_create(
    *, faces_root: Path, slug: str, per_method: int, seed: int, replace: bool = False
) -> Study:
    """Build an open demo study from real photos: 4 method labels × `per_method` match sets."""
    plans = demo_plan(faces_root=faces_root, per_method=per_method, seed=seed)
    existing = Study.objects.filter(slug=slug).first()
    if existing is not None:
        if not (replace and existing.is_demo):
            raise DemoDataError(f"Study {slug!r} already exists.")
        demo_study_delete(study=existing)
    study = Study.objects.create(
        slug=slug,
        title="Demo: can you spot the same person?",
        description=(
            "A demo of the study built from real photos of public figures. The photo on the "
            "left stands in for a face reconstructed from a feature vector."
        ),
        k=DEMO_K,
        questions_per_method=min(5, per_method),
        is_demo=True,
        prolific_study_id="",
        # Tried from the links `manage.py demo` prints, or by hand: made-up IDs are welcome.
        accept_any_ids=True,
        **DEMO_CODES,
    )
    created: list[MatchSet] = []
    written: list[str] = []  # collected as we go: a rollback empties the tables
    try:
        for plan in plans:
            provenance = {
                "demo": True,
                "source": "real photos",
                "note": "method is a label only: no reconstruction was run",
                "dataset": faces_root.name,
                "seed": seed,
                "query": plan.query.relative_to(faces_root).as_posix(),
                "candidates": [
                    {"rank": c.rank, "path": c.image.relative_to(faces_root).as_posix()}
                    for c in plan.candidates
                ],
                "target_present": plan.target_present,
            }
            created.append(
                match_set_create(
                    study=study,
                    key=plan.key,
                    method=plan.method,
                    query_image=plan.query,
                    target_identity=plan.target_identity,
                    candidates=list(plan.candidates),
                    provenance=provenance,
                )
            )
            written += stored_names(created[-1:])
    except BaseException:
        storage_delete(written)
        raise
    return study_set_status(study=study, status=Study.Status.OPEN)


@transaction.atomic
def demo_study_delete(*, study: Study) -> None:
    """Delete a demo study with its participants, answers and image files."""
    if not study.is_demo:
        raise ValueError(f"Study {study.slug!r} is not a demo study; it is never deleted here.")
    names = stored_names(list(study.match_sets.prefetch_related("candidates")))
    # Participants protect the study, and their assignments protect the match sets.
    Participant.objects.filter(study=study).delete()
    study.delete()
    transaction.on_commit(lambda: storage_delete(names))


# --- The demo from the real pipeline --------------------------------------------------------

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
    def tiny(cls) -> "DemoPipelineConfig":
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
    folders = face_folders(faces_root)
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
    from reconstruction.methods.eigenfaces import EigenfacesConfig
    from reconstruction.models import FaceImage, Split
    from reconstruction.recognizers.embedding import dataset_embed
    from reconstruction.services import (
        dataset_import,
        eigenbasis_train,
        reconstruction_create,
        study_build,
    )

    existing = Study.objects.filter(slug=slug).first()
    if existing is not None and not (replace and existing.is_demo):
        raise DemoDataError(f"Study {slug!r} already exists.")
    started = time.perf_counter()

    def step(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    plan = demo_subset_plan(
        faces_root=faces_root,
        targets=config.targets,
        train=config.train,
        distractors=config.distractors,
        seed=config.seed,
    )
    key = hashlib.sha256(
        "\n".join(f"{n}:{','.join(p.name for p in ps)}" for n, ps in plan.items()).encode()
    ).hexdigest()[:10]
    name = f"demo-{key}"
    training = {n: photos for n, photos in plan.items() if len(photos) == 2}
    attacked_side = {n: photos for n, photos in plan.items() if n not in training}
    folder = Path(var_dir) / "demo-faces"
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
    basis = eigenbasis_train(
        dataset=f"{name}-train", method="pca", seed=config.seed, progress=progress
    )  # paper-sized PCA: 1024 directions, fewer from the data on a small split
    step(f"2/5 Eigenfaces basis #{basis.pk}: PCA on {basis.n_images} training faces")
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
    for i, identity in enumerate(sorted(attacked), start=1):
        tick = time.perf_counter()
        row, created = reconstruction_create(
            target=by_identity[identity][0],
            method="eigenfaces",
            recognizer=config.recognizer,
            config=eigen,
            seed=config.seed,
            artifact=basis,
            progress=False,
        )
        state = f"{time.perf_counter() - tick:.1f} s" if created else "reused"
        step(f"    {i}/{count} {identity}: cosine {row.cosine:.3f} in F ({state})")
    embedded = dataset_embed(dataset=name, recognizer=config.second, progress=progress)
    step(
        f"4/5 embed the gallery with {config.second} (F'): {embedded.computed} computed, "
        f"{embedded.unchanged} reused"
    )
    if existing is not None:
        demo_study_delete(study=existing)
    gallery_size = config.targets + config.distractors
    description = (
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
    built = study_build(
        slug=slug,
        title="Demo: can you spot the same person?",
        description=description,
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
    study = Study.objects.get(slug=slug)
    study.accept_any_ids = True  # as demo_study_create: a demo is tried with made-up IDs
    study.save(update_fields=["accept_any_ids"])
    return study_set_status(study=study, status=Study.Status.OPEN)
