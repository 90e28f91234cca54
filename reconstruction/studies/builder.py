"""From reconstructions to the survey's match sets: target choice, F''s gallery and top-K.

The study design (DESIGN.md, "Match sets"; Wenger et al. 2022, §6): for each reconstruction
chosen for the study, a second recognizer F' searches a gallery of real faces and its top-5
become the candidates shown beside the reconstruction. By default that is Metric 1's
image-level top-5 — the paper shows participants "the same top-K matches produced by local
models F'", and Metric 1 ranks gallery images, so several photos of one person (the true one
or a wrong one) may fill several of the K places; ``match_sets="identity"`` takes each
identity's best image instead (K distinct identities). `MATCH_SET_MODES` names both.

- Targets: per method, one Reconstruction (made with F) per target identity; identities are
  drawn with a seed, the same ones for every method where possible, so the survey's Latin
  square (one match set per identity × method) applies.
- Gallery: the dataset's gallery and target identities (never the reconstructor's training
  split), embedded with F'; every chosen target identity is enrolled, the other identities
  are drawn with the seed. The reconstruction's source photo is excluded from the search by
  default (the attacker does not hold the leaked photo itself); ``exclude_source=False``
  gives the included variant. With exclusion, a target whose identity has no other gallery
  photo could never be found, so it is not chosen.
- Query: the reconstruction image (112×112, ArcFace framing) embedded with F' as
  `reconstruction.recognizers.registry.reconstruction_view` shows it to F' — the one view Metric 1,
  the bots and the benchmarks use too (dlib-resnet: the dlib chip cut with a fixed mean dlib
  shape in the ArcFace frame, the framing of its gallery's chips).

Database reads only; `reconstruction.services.study_build` writes the study.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconstruction.models import FaceDataset, FaceImage, Reconstruction, Split

if TYPE_CHECKING:
    from reconstruction.metric1.gallery import Gallery

__all__ = [
    "GALLERY_SPLITS",
    "MATCH_SET_MODES",
    "StudyBuildError",
    "StudyRequest",
    "TargetPick",
    "file_sha256",
    "gallery_enrol",
    "gallery_pool",
    "gallery_provenance",
    "reconstructions_available",
    "targets_choose",
    "targets_pick",
]

GALLERY_SPLITS = (Split.GALLERY, Split.TARGET)
# How a match set's K candidates are taken from F''s ranking (``--match-sets``): "image" is
# Metric 1's (and the paper's) top-K images, the default; "identity" is K distinct identities.
MATCH_SET_MODES = {
    "image": "image level (Metric 1's top-K, the paper's): the K best gallery images; one "
    "identity may fill several places",
    "identity": "identity level: each identity's best image, the K best identities",
}


class StudyBuildError(ValueError):
    """A study cannot be built as asked; the message says what to run or change."""


@dataclass(frozen=True)
class StudyRequest:
    """What `study_build` is asked for: its arguments (``methods`` resolved) and the study's K."""

    slug: str
    title: str
    dataset: str
    recognizer: str  # F: the reconstructions were made from its vectors
    second: str  # F': ranks the gallery
    methods: list[str]
    per_method: int
    gallery_identities: int | None
    seed: int
    exclude_source: bool
    match_sets: str
    description: str
    is_demo: bool
    codes: dict[str, str] | None
    progress: bool
    provenance_extra: dict
    k: int


@dataclass(frozen=True)
class TargetPick:
    """One chosen reconstruction: its method, target identity and the row itself."""

    method: str
    identity_id: int
    reconstruction: Reconstruction


def file_sha256(field: object) -> str:
    """SHA-256 of a stored file (a FieldFile)."""
    digest = hashlib.sha256()
    with field.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reconstructions_available(
    *,
    dataset: FaceDataset,
    method: str,
    recognizer: str,
    findable: set[int] | None,
    seed: int,
) -> dict[int, Reconstruction]:
    """Identity id → one reconstruction of ``method`` with F of a target image of that identity.

    Several runs of one target image (configs, seeds): the newest. Several target images of
    one identity: one drawn with ``seed``. ``findable``: identities allowed (None: all).
    """
    rows = (
        Reconstruction.objects.filter(
            target__dataset=dataset,
            method=method,
            recognizer=recognizer,
            target__identity__split=Split.TARGET,
        )
        .select_related("target__identity", "artifact")
        .order_by("target_id", "-created_at", "-id")
    )
    newest: dict[int, Reconstruction] = {}
    for row in rows:
        newest.setdefault(row.target_id, row)
    by_identity: dict[int, list[Reconstruction]] = {}
    for row in newest.values():
        identity_id = row.target.identity_id
        if findable is None or identity_id in findable:
            by_identity.setdefault(identity_id, []).append(row)
    rng = random.Random(f"{seed}:{method}:images")
    return {
        identity_id: rng.choice(sorted(options, key=lambda r: r.target_id))
        for identity_id, options in sorted(by_identity.items())
    }


def targets_choose(
    available: dict[str, list[int]], *, per_method: int, seed: int
) -> dict[str, list[int]]:
    """Per method, up to ``per_method`` identity ids, the same ones across methods first.

    Database-free and deterministic for a seed: identities every method can serve are drawn
    first (so the Latin square applies); a method short of shared identities is topped up
    from its own.
    """
    methods = list(available)
    shared = sorted(set.intersection(*(set(ids) for ids in available.values())) if methods else [])
    random.Random(f"{seed}:shared").shuffle(shared)
    chosen: dict[str, list[int]] = {}
    for method in methods:
        picked = shared[:per_method]
        if len(picked) < per_method:
            own = sorted(set(available[method]) - set(picked))
            random.Random(f"{seed}:{method}").shuffle(own)
            picked += own[: per_method - len(picked)]
        chosen[method] = picked
    return chosen


def gallery_pool(*, dataset: FaceDataset) -> dict[int, list[int]]:
    """Identity id → its ok image ids (by path) in the gallery and target splits."""
    rows = (
        FaceImage.objects.ok()
        .filter(dataset=dataset, identity__split__in=GALLERY_SPLITS)
        .order_by("identity_id", "relative_path")
        .values_list("id", "identity_id")
    )
    pool: dict[int, list[int]] = {}
    for image_id, identity_id in rows:
        pool.setdefault(identity_id, []).append(image_id)
    return pool


def gallery_enrol(
    *,
    dataset: FaceDataset,
    pool: dict[int, list[int]],
    recognizer: str,
    weights_sha256: str,
    required: set[int],
    identities: int | None,
    seed: int,
    k: int,
) -> Gallery:
    """F''s gallery: every ``required`` identity plus others drawn with ``seed`` (all: None)."""
    from reconstruction.metric1.gallery import Gallery, stored_vectors

    others = sorted(set(pool) - required)
    if identities is None:
        enrolled = sorted(required | set(others))
    else:
        if identities < max(k, len(required)):
            raise StudyBuildError(
                f"--gallery-identities {identities} is too small: it must hold the "
                f"{len(required)} target identities and at least K = {k} identities"
            )
        if identities > len(pool):
            raise StudyBuildError(
                f"--gallery-identities {identities}: the gallery and target splits of "
                f"{dataset.name!r} hold only {len(pool)} identities with aligned faces"
            )
        drawn = random.Random(f"{seed}:gallery").sample(others, identities - len(required))
        enrolled = sorted(required | set(drawn))
    if len(enrolled) < k + 1:
        raise StudyBuildError(
            f"the gallery is too small: {len(enrolled)} identities in the gallery and target "
            f"splits of {dataset.name!r}; top-{k} needs at least {k + 1} (import more faces)"
        )
    image_ids = [image_id for identity in enrolled for image_id in pool[identity]]
    labels = [identity for identity in enrolled for _ in pool[identity]]
    try:
        vectors = stored_vectors(image_ids, recognizer=recognizer, weights_sha256=weights_sha256)
    except ValueError as exc:
        raise StudyBuildError(
            f"{exc}: run `manage.py embed {dataset.name} --recognizer {recognizer}`"
        ) from exc
    return Gallery(
        vectors,
        labels=labels,
        image_ids=image_ids,
        description={"identities": len(enrolled), "images": len(image_ids)},
    )


def targets_pick(
    request: StudyRequest, *, dataset: FaceDataset, pool: dict[int, list[int]]
) -> list[TargetPick]:
    """Per method, up to ``per_method`` reconstructions made with F, one per target identity,
    the same identities across methods first (`targets_choose`); with ``exclude_source``,
    only identities with another gallery photo."""
    findable = None
    if request.exclude_source:
        # The source photo is excluded: only identities with another gallery photo can be found.
        findable = {identity for identity, images in pool.items() if len(images) >= 2}
    available: dict[str, dict[int, Reconstruction]] = {}
    for method in request.methods:
        available[method] = reconstructions_available(
            dataset=dataset,
            method=method,
            recognizer=request.recognizer,
            findable=findable,
            seed=request.seed,
        )
        if not available[method]:
            raise StudyBuildError(
                f"no {method} reconstructions with {request.recognizer} of target images of "
                f"{request.dataset!r}"
                + (" whose identity has another gallery photo" if request.exclude_source else "")
                + f": run `manage.py reconstruct --method {method} --dataset {request.dataset} "
                f"--recognizer {request.recognizer}`"
            )
    chosen = targets_choose(
        {m: list(rows) for m, rows in available.items()},
        per_method=request.per_method,
        seed=request.seed,
    )
    return [
        TargetPick(method, identity, available[method][identity])
        for method in request.methods
        for identity in chosen[method]
    ]


def gallery_provenance(request: StudyRequest, gallery: Gallery) -> dict[str, object]:
    """The gallery every match set was drawn from: F', splits, size, exclusion and ranking."""
    return {
        "recognizer": request.second,
        "splits": [str(s) for s in GALLERY_SPLITS],
        "identities": gallery.description["identities"],
        "images": len(gallery),
        "requested_identities": request.gallery_identities,
        "seed": request.seed,
        "exclusion": (
            "the reconstruction's source image is excluded from the search"
            if request.exclude_source
            else "included: the source image may be returned (upper-bound variant)"
        ),
        "ranking": f"{MATCH_SET_MODES[request.match_sets]}; top {request.k}",
    }
