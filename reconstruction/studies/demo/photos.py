"""The demo study from photos alone (``manage.py demo --photos-only``, ~10 s).

For each match set a target identity with at least two photos is drawn: one photo is the
query, another photo of the same person is among the K candidates (about 1 in 5 match sets
leave the target out, so "none of these" is sometimes right). The photos are read with the
one identity-per-folder scanner, `reconstruction.faces.datasets.dataset_scan` (sorted,
hidden files skipped, suffixes ``IMAGE_SUFFIXES``). Also what both demos share: the photo
folder, the study's codes and `demo_study_delete`.
"""

import random
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from reconstruction.faces.datasets import DatasetLayoutError, dataset_scan
from survey.matchsets import CandidateInput, match_set_create, storage_delete, stored_names
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


def face_photos(root: Path) -> dict[str, list[Path]]:
    """Identity → its photos (sorted; hidden files skipped), by the one identity-per-folder
    scanner; none when the folder holds no identity folder with images."""
    try:
        scan = dataset_scan(root)
    except DatasetLayoutError:
        return {}
    return {identity.name: [root / f for f in identity.files] for identity in scan.identities}


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
    folders = face_photos(faces_root)
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


def _demo_provenance(plan: DemoMatchSetPlan, *, faces_root: Path, seed: int) -> dict:
    """What a photos-only match set records: the photos by path, and that no method ran."""
    return {
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
            provenance = _demo_provenance(plan, faces_root=faces_root, seed=seed)
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
