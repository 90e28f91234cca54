"""Building a survey study from reconstructions and F-prime's top-5 gallery matches.

`study_build` runs the steps in order: check the request, choose the targets, enrol F''s
gallery (`builder`), rank each reconstruction's top-K, then write the study and its match
sets (each with its provenance) through the survey's one entry point, `match_set_create`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import transaction

from reconstruction.models import FaceDataset, FaceImage, Reconstruction
from reconstruction.storage import aligned_pixels_of, stored_bytes

if TYPE_CHECKING:
    from reconstruction.metric1.gallery import Gallery, TopK
    from reconstruction.studies.builder import StudyRequest, TargetPick
    from survey.matchsets import CandidateInput
    from survey.models import MatchSet, Study

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


@dataclass(frozen=True)
class _Ranking:
    """F''s top-K of every chosen reconstruction, and what the match sets show from it."""

    picks: list[TargetPick]
    top: TopK  # row q: the candidates of picks[q]
    images: dict[int, FaceImage]  # shown image id → row
    names: dict[int, str]  # identity id → name
    root: Path  # the dataset's photos


@dataclass(frozen=True)
class _Shared:
    """What every match set's provenance holds beside its own target and candidates."""

    request: StudyRequest
    source: FaceDataset
    f_sha256: str  # F's installed weights; a reconstruction made with others gets a note
    f2_sha256: str  # F''s installed weights
    gallery: dict[str, Any]  # `builder.gallery_provenance`


def _candidate_image(image: FaceImage, root: Path) -> bytes:
    """The photo shown for a gallery candidate: its source photo, else its 160 crop."""
    try:
        return (root / image.relative_path).read_bytes()
    except OSError:
        with image.crop160.open("rb") as handle:
            return handle.read()


def _request_check(request: StudyRequest) -> FaceDataset:
    """The dataset to build from; StudyBuildError for anything unknown, taken or out of range."""
    from reconstruction.recognizers.registry import RECOGNIZERS
    from reconstruction.studies.builder import MATCH_SET_MODES, StudyBuildError
    from survey.models import FvrMethod, Study

    unknown = [m for m in request.methods if m not in FvrMethod.values]
    if unknown:
        raise StudyBuildError(
            f"unknown method(s) {', '.join(unknown)}; use {', '.join(FvrMethod.values)}"
        )
    for name in (request.recognizer, request.second):
        if name not in RECOGNIZERS:
            raise StudyBuildError(
                f"unknown recognizer {name!r}; known: {', '.join(sorted(RECOGNIZERS))}"
            )
    if request.per_method < 1:
        raise StudyBuildError("--per-method must be at least 1")
    if request.match_sets not in MATCH_SET_MODES:
        raise StudyBuildError(
            f"unknown match-set mode {request.match_sets!r}; use {' or '.join(MATCH_SET_MODES)}"
        )
    source = FaceDataset.objects.filter(name=request.dataset).first()
    if source is None:
        known = ", ".join(FaceDataset.objects.values_list("name", flat=True)) or "none"
        raise StudyBuildError(f"unknown dataset {request.dataset!r}; imported: {known}")
    if Study.objects.filter(slug=request.slug).exists():
        raise StudyBuildError(f"study {request.slug!r} already exists: pick another --slug")
    return source


def _gallery_enrol(
    request: StudyRequest,
    picks: list[TargetPick],
    *,
    dataset: FaceDataset,
    pool: dict[int, list[int]],
    weights_sha256: str,
) -> Gallery:
    """F''s gallery (`builder.gallery_enrol`): every picked identity plus the drawn others."""
    from reconstruction.studies.builder import gallery_enrol

    return gallery_enrol(
        dataset=dataset,
        pool=pool,
        recognizer=request.second,
        weights_sha256=weights_sha256,
        required={pick.identity_id for pick in picks},
        identities=request.gallery_identities,
        seed=request.seed,
        k=request.k,
    )


def _rank(
    request: StudyRequest, gallery: Gallery, picks: list[TargetPick], *, source: FaceDataset
) -> _Ranking:
    """Each reconstruction embedded in F' as F' sees it, and F''s top-K in the gallery (its
    source photo left out with ``exclude_source``)."""
    from reconstruction.recognizers.registry import reconstruction_embed

    pixels = aligned_pixels_of([pick.reconstruction for pick in picks])
    queries = reconstruction_embed(request.second, pixels)
    exclude = [[pick.reconstruction.target_id] if request.exclude_source else [] for pick in picks]
    top = gallery.search(queries, k=request.k, by=request.match_sets, exclude=exclude)
    shown_ids = {int(i) for i in top.image_ids.ravel() if i >= 0}
    images = FaceImage.objects.select_related("identity").in_bulk(shown_ids)
    names = dict(source.identities.values_list("id", "name"))
    return _Ranking(picks, top, images, names, Path(source.root))


def _summary_start(
    request: StudyRequest, gallery: Gallery, picks: list[TargetPick]
) -> StudyBuildSummary:
    """The summary's counts known before anything is written."""
    identities = {m: [p.identity_id for p in picks if p.method == m] for m in request.methods}
    return StudyBuildSummary(
        study_slug=request.slug,
        by_method={m: len(ids) for m, ids in identities.items()},
        gallery_identities=gallery.description["identities"],
        gallery_images=len(gallery),
        shared_identities=len(set.intersection(*(set(ids) for ids in identities.values()))),
    )


def _study_create(request: StudyRequest, *, questions_per_method: int) -> Study:
    """The draft study, with fresh Prolific codes unless ``codes`` are given."""
    import secrets

    from survey.models import Study

    return Study.objects.create(
        slug=request.slug,
        title=request.title,
        description=request.description,
        k=request.k,
        questions_per_method=questions_per_method,
        is_demo=request.is_demo,
        **(
            request.codes
            or {
                "completion_code": f"C{secrets.token_hex(5).upper()}",
                "failed_attention_code": f"F{secrets.token_hex(5).upper()}",
                "no_consent_code": f"N{secrets.token_hex(5).upper()}",
            }
        ),
    )


def _candidates(
    ranking: _Ranking, q: int, *, k: int, match_sets: str
) -> tuple[list[CandidateInput], list[dict[str, Any]]]:
    """The K candidates of ``ranking.picks[q]``, and the same as its provenance lists them."""
    from reconstruction.studies.builder import StudyBuildError
    from survey.matchsets import CandidateInput

    pick, top = ranking.picks[q], ranking.top
    candidates, listed = [], []
    for rank, (image_id, label, score) in enumerate(
        zip(top.image_ids[q], top.labels[q], top.scores[q], strict=True), start=1
    ):
        if image_id < 0:
            raise StudyBuildError(
                f"the gallery returned fewer than {k} "
                f"{'images' if match_sets == 'image' else 'identities'} for "
                f"reconstruction #{pick.reconstruction.pk}: enrol more faces"
            )
        image = ranking.images[int(image_id)]
        identity = ranking.names[int(label)]
        is_true = int(label) == pick.identity_id
        score = round(float(score), 6)
        image_bytes = _candidate_image(image, ranking.root)
        candidates.append(
            CandidateInput(
                rank=rank, identity=identity, image=image_bytes, is_true=is_true, score=score
            )
        )
        listed.append(
            {
                "rank": rank,
                "image_id": image.pk,
                "path": image.relative_path,
                "identity": identity,
                "score": score,
                "is_true": is_true,
            }
        )
    return candidates, listed


def _reconstruction_provenance(row: Reconstruction) -> dict[str, Any]:
    """How the query image was made: method, config, seed, timing, image digest, artifact."""
    from reconstruction.studies.builder import file_sha256

    artifact = row.artifact
    return {
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
    }


def _match_set_provenance(
    pick: TargetPick, shared: _Shared, *, identity: str, listed: list[dict], present: bool
) -> dict[str, Any]:
    """One match set's provenance: dataset, target, reconstruction, F, F', gallery, candidates."""
    row, target = pick.reconstruction, pick.reconstruction.target
    provenance = {
        "builder": "build_study",
        "dataset": {"name": shared.source.name, "fingerprint": shared.source.fingerprint},
        "target": {
            "image_id": target.pk,
            "path": target.relative_path,
            "sha256": target.sha256,
            "identity": identity,
        },
        "reconstruction": _reconstruction_provenance(row),
        "F": {"name": row.recognizer, "weights_sha256": row.recognizer_sha256},
        "final_cosine": round(row.cosine, 6),
        "F_prime": {"name": shared.request.second, "weights_sha256": shared.f2_sha256},
        "gallery": shared.gallery,
        "match_sets": shared.request.match_sets,
        "candidates": listed,
        "target_present": present,
        "seed": shared.request.seed,
        **shared.request.provenance_extra,
    }
    if row.recognizer_sha256 != shared.f_sha256:
        provenance["F"]["note"] = "F's installed weights differ from this run's"
    return provenance


def _match_set_write(
    study: Study, ranking: _Ranking, q: int, shared: _Shared, summary: StudyBuildSummary
) -> MatchSet:
    """The match set of ``ranking.picks[q]``, counted in ``summary`` as target present or not."""
    from survey.matchsets import match_set_create

    pick = ranking.picks[q]
    identity = ranking.names[pick.identity_id]
    candidates, listed = _candidates(ranking, q, k=study.k, match_sets=shared.request.match_sets)
    present = any(c.is_true for c in candidates)
    summary.target_present += present
    summary.target_absent += not present
    provenance = _match_set_provenance(
        pick, shared, identity=identity, listed=listed, present=present
    )
    return match_set_create(
        study=study,
        key=f"{pick.method}-{identity}"[:100],
        method=pick.method,
        query_image=stored_bytes(pick.reconstruction.image),
        target_identity=identity,
        candidates=candidates,
        provenance=provenance,
    )


def _summary_finish(
    summary: StudyBuildSummary,
    study: Study,
    request: StudyRequest,
    picks: list[TargetPick],
    *,
    started: float,
) -> StudyBuildSummary:
    """The summary once the study is written: whether the survey's Latin square applies
    (every identity has a match set for every method, in equal shares that fill each
    method's questions) and the seconds taken."""
    methods = request.methods
    required = {pick.identity_id for pick in picks}
    summary.latin_square = (
        len(methods) > 1
        and summary.shared_identities == len(required)
        and len(required) % len(methods) == 0
        and len(required) // len(methods) >= study.questions_per_method
    )
    summary.seconds = time.perf_counter() - started
    return summary


def _study_write(ranking: _Ranking, shared: _Shared, summary: StudyBuildSummary) -> Study:
    """Create the study and its match sets in one transaction; on failure, delete the image
    files already stored, since the rollback leaves them behind."""
    from tqdm import tqdm

    from survey.matchsets import storage_delete, stored_names

    written: list[str] = []
    try:
        with transaction.atomic():
            # Up to 5 questions per method, no more than the scarcest method has match sets for.
            questions_per_method = min(5, min(summary.by_method.values()))
            study = _study_create(shared.request, questions_per_method=questions_per_method)
            bar = tqdm(ranking.picks, desc="match sets", disable=not shared.request.progress)
            for q, _pick in enumerate(bar):
                created = _match_set_write(study, ranking, q, shared, summary)
                written += stored_names([created])
    except BaseException:
        storage_delete(written)
        raise
    return study


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
    from reconstruction.recognizers.registry import get_recognizer
    from reconstruction.studies import builder
    from survey.models import FvrMethod, Study

    started = time.perf_counter()
    request = builder.StudyRequest(
        slug=slug,
        title=title,
        dataset=dataset,
        recognizer=recognizer,
        second=second,
        methods=list(methods or FvrMethod.values),
        per_method=per_method,
        gallery_identities=gallery_identities,
        seed=seed,
        exclude_source=exclude_source,
        match_sets=match_sets,
        description=description,
        is_demo=is_demo,
        codes=codes,
        progress=progress,
        provenance_extra=provenance_extra or {},
        k=Study._meta.get_field("k").default,
    )
    source = _request_check(request)
    pool = builder.gallery_pool(dataset=source)
    picks = builder.targets_pick(request, dataset=source, pool=pool)
    f_sha256, f2_sha256 = (get_recognizer(name).weights_sha256 for name in (recognizer, second))
    gallery = _gallery_enrol(request, picks, dataset=source, pool=pool, weights_sha256=f2_sha256)
    ranking = _rank(request, gallery, picks, source=source)
    summary = _summary_start(request, gallery, picks)
    shared = _Shared(
        request, source, f_sha256, f2_sha256, builder.gallery_provenance(request, gallery)
    )
    study = _study_write(ranking, shared, summary)
    return _summary_finish(summary, study, request, picks, started=started)
