"""Building a survey study from reconstructions and F-prime's top-5 gallery matches."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Reconstruction,
)
from reconstruction.storage import aligned_pixels_of, stored_bytes

logger = logging.getLogger(__name__)


@dataclass
class StudyBuildSummary:
    """What `study_build` created."""

    study_slug: str
    by_method: dict[str, int] = field(default_factory=dict)
    target_present: int = 0
    target_absent: int = 0
    gallery_identities: int = 0
    gallery_images: int = 0
    shared_identities: int = 0  # identities with a match set for every method
    latin_square: bool = False
    seconds: float = 0.0


def _candidate_image(image: FaceImage, root: Path) -> bytes:
    """The photo shown for a gallery candidate: its source photo, else its 160 crop."""
    try:
        return (root / image.relative_path).read_bytes()
    except OSError:
        with image.crop160.open("rb") as handle:
            return handle.read()


def study_build(
    *,
    slug: str,
    title: str,
    dataset: str,
    recognizer: str,
    second: str,
    methods: list[str] | None = None,
    per_method: int = 8,
    gallery_identities: int | None = None,
    seed: int = 0,
    exclude_source: bool = True,
    match_sets: str = "image",
    description: str = "",
    is_demo: bool = False,
    codes: dict[str, str] | None = None,
    progress: bool = True,
    provenance_extra: dict | None = None,
) -> StudyBuildSummary:
    """Create a draft study whose match sets are F''s top-K for reconstructions made with F:
    Metric 1's image-level top-K by default, or ``match_sets="identity"`` (K distinct
    identities); each records its provenance, the mode under the key ``"match_sets"`` (plus
    ``provenance_extra``, e.g. a demo preset). See `reconstruction.studies.builder`."""
    import secrets

    from tqdm import tqdm

    from reconstruction.recognizers.registry import (
        RECOGNIZERS,
        get_recognizer,
        reconstruction_embed,
    )
    from reconstruction.studies.builder import (
        GALLERY_SPLITS,
        MATCH_SET_MODES,
        StudyBuildError,
        file_sha256,
        gallery_enrol,
        gallery_pool,
        reconstructions_available,
        targets_choose,
    )
    from survey.matchsets import CandidateInput, match_set_create, storage_delete, stored_names
    from survey.models import FvrMethod, Study

    started = time.perf_counter()
    k = Study._meta.get_field("k").default
    methods = list(methods or FvrMethod.values)
    unknown = [m for m in methods if m not in FvrMethod.values]
    if unknown:
        raise StudyBuildError(
            f"unknown method(s) {', '.join(unknown)}; use {', '.join(FvrMethod.values)}"
        )
    for name in (recognizer, second):
        if name not in RECOGNIZERS:
            raise StudyBuildError(
                f"unknown recognizer {name!r}; known: {', '.join(sorted(RECOGNIZERS))}"
            )
    if per_method < 1:
        raise StudyBuildError("--per-method must be at least 1")
    if match_sets not in MATCH_SET_MODES:
        raise StudyBuildError(
            f"unknown match-set mode {match_sets!r}; use {' or '.join(MATCH_SET_MODES)}"
        )
    source = FaceDataset.objects.filter(name=dataset).first()
    if source is None:
        known = ", ".join(FaceDataset.objects.values_list("name", flat=True)) or "none"
        raise StudyBuildError(f"unknown dataset {dataset!r}; imported: {known}")
    if Study.objects.filter(slug=slug).exists():
        raise StudyBuildError(f"study {slug!r} already exists: pick another --slug")

    pool = gallery_pool(dataset=source)
    findable = None
    if exclude_source:
        # The source photo is excluded: only identities with another gallery photo can be found.
        findable = {identity for identity, images in pool.items() if len(images) >= 2}
    available: dict[str, dict[int, Reconstruction]] = {}
    for method in methods:
        available[method] = reconstructions_available(
            dataset=source, method=method, recognizer=recognizer, findable=findable, seed=seed
        )
        if not available[method]:
            raise StudyBuildError(
                f"no {method} reconstructions with {recognizer} of target images of "
                f"{dataset!r}"
                + (" whose identity has another gallery photo" if exclude_source else "")
                + f": run `manage.py reconstruct --method {method} --dataset {dataset} "
                f"--recognizer {recognizer}`"
            )
    chosen = targets_choose(
        {m: list(rows) for m, rows in available.items()}, per_method=per_method, seed=seed
    )
    required = {identity for ids in chosen.values() for identity in ids}
    engine_f = get_recognizer(recognizer)
    engine_f2 = get_recognizer(second)
    gallery = gallery_enrol(
        dataset=source,
        pool=pool,
        recognizer=second,
        weights_sha256=engine_f2.weights_sha256,
        required=required,
        identities=gallery_identities,
        seed=seed,
        k=k,
    )
    picks = [(m, identity, available[m][identity]) for m in methods for identity in chosen[m]]
    pixels = aligned_pixels_of([row for _, _, row in picks])
    queries = reconstruction_embed(second, pixels)
    exclude = [[row.target_id] if exclude_source else [] for _, _, row in picks]
    top = gallery.search(queries, k=k, by=match_sets, exclude=exclude)
    shown_ids = {int(i) for i in top.image_ids.ravel() if i >= 0}
    images = FaceImage.objects.select_related("identity").in_bulk(shown_ids)
    names = dict(source.identities.values_list("id", "name"))
    root = Path(source.root)

    summary = StudyBuildSummary(
        study_slug=slug,
        gallery_identities=gallery.description["identities"],
        gallery_images=len(gallery),
    )
    counts = {m: len(chosen[m]) for m in methods}
    summary.by_method = counts
    summary.shared_identities = len(set.intersection(*(set(chosen[m]) for m in methods)))
    gallery_provenance = {
        "recognizer": second,
        "splits": [str(s) for s in GALLERY_SPLITS],
        "identities": gallery.description["identities"],
        "images": len(gallery),
        "requested_identities": gallery_identities,
        "seed": seed,
        "exclusion": (
            "the reconstruction's source image is excluded from the search"
            if exclude_source
            else "included: the source image may be returned (upper-bound variant)"
        ),
        "ranking": f"{MATCH_SET_MODES[match_sets]}; top {k}",
    }
    written: list[str] = []
    created = []
    try:
        with transaction.atomic():
            study = Study.objects.create(
                slug=slug,
                title=title,
                description=description,
                k=k,
                questions_per_method=min(5, min(counts.values())),
                is_demo=is_demo,
                **(
                    codes
                    or {
                        "completion_code": f"C{secrets.token_hex(5).upper()}",
                        "failed_attention_code": f"F{secrets.token_hex(5).upper()}",
                        "no_consent_code": f"N{secrets.token_hex(5).upper()}",
                    }
                ),
            )
            bar = tqdm(picks, desc="match sets", disable=not progress)
            for q, (method, identity_id, row) in enumerate(bar):
                candidates, listed = [], []
                for rank, (image_id, label, score) in enumerate(
                    zip(top.image_ids[q], top.labels[q], top.scores[q], strict=True), start=1
                ):
                    if image_id < 0:
                        raise StudyBuildError(
                            f"the gallery returned fewer than {k} "
                            f"{'images' if match_sets == 'image' else 'identities'} for "
                            f"reconstruction #{row.pk}: enrol more faces"
                        )
                    image = images[int(image_id)]
                    is_true = int(label) == identity_id
                    candidates.append(
                        CandidateInput(
                            rank=rank,
                            identity=names[int(label)],
                            image=_candidate_image(image, root),
                            is_true=is_true,
                            score=round(float(score), 6),
                        )
                    )
                    listed.append(
                        {
                            "rank": rank,
                            "image_id": image.pk,
                            "path": image.relative_path,
                            "identity": names[int(label)],
                            "score": round(float(score), 6),
                            "is_true": is_true,
                        }
                    )
                present = any(c.is_true for c in candidates)
                summary.target_present += present
                summary.target_absent += not present
                target = row.target
                artifact = row.artifact
                provenance = {
                    "builder": "build_study",
                    "dataset": {"name": source.name, "fingerprint": source.fingerprint},
                    "target": {
                        "image_id": target.pk,
                        "path": target.relative_path,
                        "sha256": target.sha256,
                        "identity": names[identity_id],
                    },
                    "reconstruction": {
                        "id": row.pk,
                        "method": row.method,
                        "config": row.config,
                        "config_hash": row.config_hash,
                        "seed": row.seed,
                        "device": row.device,
                        "queries": row.queries,
                        "seconds": round(row.seconds, 3),
                        "image_sha256": file_sha256(row.image),
                        "artifact": None
                        if artifact is None
                        else {
                            "id": artifact.pk,
                            "kind": artifact.kind,
                            "fitting": artifact.fitting,
                            "sha256": artifact.sha256,
                            "dataset": artifact.dataset.name,
                            "split": artifact.split,
                        },
                    },
                    "F": {"name": row.recognizer, "weights_sha256": row.recognizer_sha256},
                    "final_cosine": round(row.cosine, 6),
                    "F_prime": {"name": second, "weights_sha256": engine_f2.weights_sha256},
                    "gallery": gallery_provenance,
                    "match_sets": match_sets,
                    "candidates": listed,
                    "target_present": present,
                    "seed": seed,
                    **(provenance_extra or {}),
                }
                if row.recognizer_sha256 != engine_f.weights_sha256:
                    provenance["F"]["note"] = "F's installed weights differ from this run's"
                created.append(
                    match_set_create(
                        study=study,
                        key=f"{method}-{names[identity_id]}"[:100],
                        method=method,
                        query_image=stored_bytes(row.image),
                        target_identity=names[identity_id],
                        candidates=candidates,
                        provenance=provenance,
                    )
                )
                written += stored_names(created[-1:])
    except BaseException:
        storage_delete(written)
        raise
    summary.latin_square = (
        len(methods) > 1
        and summary.shared_identities == len(required)
        and len(required) % len(methods) == 0
        and len(required) // len(methods) >= study.questions_per_method
    )
    summary.seconds = time.perf_counter() - started
    return summary
