"""Service functions of the reconstruction app: writes that touch several rows or files."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from reconstruction import alignment
from reconstruction.datasets import (
    DEFAULT_SPLITS,
    dataset_scan,
    splits_assign,
    splits_parse,
)
from reconstruction.models import (
    Embedding,
    FaceDataset,
    FaceImage,
    Identity,
    Reconstruction,
    ReconstructorArtifact,
    Split,
    aligned_upload_to,
)

logger = logging.getLogger(__name__)

WRITE_BATCH = 64  # images per transaction: short transactions, few commits
IDENTITY_CHUNK = 256  # identities whose existing rows are read in one query
UPDATED_FIELDS = [
    "sha256",
    "width",
    "height",
    "status",
    "message",
    "detector",
    "faces_found",
    "detection_score",
    "box",
    "landmarks",
    "dlib_landmarks",
    "aligned",
    "crop160",
    "updated_at",
]


@dataclass
class ImportSummary:
    """What `dataset_import` found and did; lists name files relative to the root."""

    dataset: str
    identities: int
    identities_created: int
    splits: dict[str, int]
    splits_changed: int
    images: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ok: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped_identities: int = 0
    ignored_files: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # totals over processed images

    @property
    def processed(self) -> int:
        """Images decoded and aligned in this run (new or changed)."""
        return self.created + self.updated

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    row: FaceImage
    is_new: bool
    new_files: list[str]
    old_files: list[str]


def _png(pixels: object) -> bytes:
    buffer = io.BytesIO()
    # Lossless: recognizers and reconstructors see exactly the warped pixels.
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)


def _face_image_fill(
    row: FaceImage, *, data: bytes | None, error: str, relative_path: str, stage_ms: Counter
) -> list[str]:
    """Decode and align one photo into `row`; save its crops; return the stored file names."""
    row.sha256 = hashlib.sha256(data).hexdigest() if data is not None else ""
    row.detector = alignment.DETECTOR_NAME
    for name in ("box", "landmarks", "dlib_landmarks", "detection_score", "width", "height"):
        setattr(row, name, None)
    row.faces_found, row.aligned, row.crop160, row.message = 0, "", "", ""
    if data is None:
        row.status, row.message = FaceImage.Status.UNREADABLE, error[:500]
        return []
    try:
        pixels = alignment.decode_rgb(data)
    except alignment.UnreadableImageError as exc:
        row.status, row.message = FaceImage.Status.UNREADABLE, str(exc)[:500]
        return []
    result = alignment.align_face(pixels)
    stage_ms.update(result.timings_ms)
    row.width, row.height, row.faces_found = result.width, result.height, result.faces_found
    face = result.face
    if face is None:
        row.status, row.message = FaceImage.Status.NO_FACE, "the HOG detector found no face"
        return []
    start = time.perf_counter()
    row.status = FaceImage.Status.OK
    row.detection_score = face.detection.score
    row.box = list(face.detection.box)
    row.landmarks = [[round(float(v), 2) for v in p] for p in face.points]
    row.dlib_landmarks = [[round(float(v), 2) for v in p] for p in face.dlib_points]
    stem = relative_path.rsplit(".", 1)[0]
    saved = []
    for field_name, pixels_out, tag in (
        ("aligned", face.aligned, "112"),
        ("crop160", face.crop160, "160"),
    ):
        target = aligned_upload_to(row, f"{stem}-{row.sha256[:12]}-{tag}.png")
        name = default_storage.save(target, ContentFile(_png(pixels_out)))
        saved.append(name)
        setattr(row, field_name, name)
    stage_ms["store"] += (time.perf_counter() - start) * 1000
    return saved


def _flush(pending: list[_Pending]) -> None:
    """Write a batch of rows in one transaction; on failure remove the files just stored."""
    if not pending:
        return
    now = timezone.now()
    for item in pending:
        item.row.updated_at = now
    try:
        with transaction.atomic():
            FaceImage.objects.bulk_create([p.row for p in pending if p.is_new])
            changed = [p.row for p in pending if not p.is_new]
            if changed:
                FaceImage.objects.bulk_update(changed, UPDATED_FIELDS)
            old = [name for p in pending for name in p.old_files]
            if old:
                transaction.on_commit(lambda: _delete_files(old))
    except BaseException:
        _delete_files([name for p in pending for name in p.new_files])
        raise
    pending.clear()


def _dataset_fingerprint(dataset: FaceDataset) -> str:
    digest = hashlib.sha256()
    rows = dataset.images.order_by("relative_path").values_list("relative_path", "sha256", "status")
    for path, sha, status in rows.iterator(chunk_size=2000):
        digest.update(f"{path}\t{sha}\t{status}\n".encode())
    return digest.hexdigest()


def dataset_import(
    *,
    name: str,
    path: Path | str,
    splits: str = DEFAULT_SPLITS,
    seed: int = 0,
    limit_identities: int | None = None,
    min_images: int = 1,
    progress: bool = True,
) -> ImportSummary:
    """Import (or update) an identity-per-folder dataset: detect, align, record checksums.

    Idempotent: a file whose SHA-256 matches its row is skipped; a changed file is processed
    again and its old crops are deleted. Each batch of rows is written in one transaction
    after its files are stored, so no row ever points at a missing crop.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    rules = splits_parse(splits, allowed=Split.values)
    scan = dataset_scan(Path(path), limit_identities=limit_identities, min_images=min_images)
    assignment = splits_assign({i.name: len(i.files) for i in scan.identities}, rules, seed=seed)

    with transaction.atomic():
        dataset, _ = FaceDataset.objects.get_or_create(
            name=name, defaults={"root": str(scan.root.resolve())}
        )
        dataset.root = str(scan.root.resolve())
        dataset.import_settings = {
            "splits": splits,
            "seed": seed,
            "limit_identities": limit_identities,
            "min_images": min_images,
            "detector": alignment.DETECTOR_NAME,
            "template": alignment.ARCFACE_TEMPLATE.tolist(),
            "aligned_size": alignment.ALIGNED_SIZE,
            "crop_size": alignment.CROP_SIZE,
            "crop_template_scale": alignment.CROP_SIZE / alignment.ALIGNED_SIZE,
        }
        dataset.save()
        existing = dict(dataset.identities.values_list("name", "split"))
        new = [
            Identity(dataset=dataset, name=n, split=assignment[n])
            for n in assignment
            if n not in existing
        ]
        Identity.objects.bulk_create(new, batch_size=500)
        moved = [n for n in assignment if n in existing and existing[n] != assignment[n]]
        for split in {assignment[n] for n in moved}:
            dataset.identities.filter(name__in=[n for n in moved if assignment[n] == split]).update(
                split=split
            )
    identity_ids = dict(dataset.identities.values_list("name", "id"))

    summary = ImportSummary(
        dataset=name,
        identities=len(scan.identities),
        identities_created=len(new),
        splits=dict(Counter(assignment.values())),
        splits_changed=len(moved),
        images=scan.image_count,
        skipped_identities=scan.skipped_identities,
        ignored_files=scan.ignored_files,
    )
    stage_ms: Counter = Counter()
    pending: list[_Pending] = []
    outcomes: dict[str, tuple[str, str]] = {}  # relative path → (status, message)
    bar = tqdm(total=scan.image_count, unit="img", disable=not progress, desc=name)
    try:
        for first in range(0, len(scan.identities), IDENTITY_CHUNK):
            chunk = scan.identities[first : first + IDENTITY_CHUNK]
            rows = {
                row.relative_path: row
                for row in FaceImage.objects.filter(
                    identity_id__in=[identity_ids[i.name] for i in chunk]
                ).only(
                    "id",
                    "relative_path",
                    "sha256",
                    "status",
                    "message",
                    "aligned",
                    "crop160",
                    "dataset_id",
                )
            }
            for identity in chunk:
                for relative_path in identity.files:
                    bar.update(1)
                    error = ""
                    try:
                        data: bytes | None = (scan.root / relative_path).read_bytes()
                    except OSError as exc:
                        data, error = None, f"cannot read file: {exc.strerror or exc}"
                    row = rows.get(relative_path)
                    if row is not None and (
                        row.sha256 == hashlib.sha256(data).hexdigest()
                        if data is not None
                        else row.status == FaceImage.Status.UNREADABLE and not row.sha256
                    ):
                        summary.unchanged += 1
                        outcomes[relative_path] = (row.status, row.message)
                        continue
                    is_new = row is None
                    old_files = (
                        [] if is_new else [n for n in (row.aligned.name, row.crop160.name) if n]
                    )
                    if is_new:
                        row = FaceImage(
                            dataset=dataset,
                            identity_id=identity_ids[identity.name],
                            relative_path=relative_path,
                        )
                    row.dataset = dataset
                    new_files = _face_image_fill(
                        row,
                        data=data,
                        error=error,
                        relative_path=relative_path,
                        stage_ms=stage_ms,
                    )
                    pending.append(_Pending(row, is_new, new_files, old_files))
                    outcomes[relative_path] = (row.status, row.message)
                    if is_new:
                        summary.created += 1
                    else:
                        summary.updated += 1
                    if len(pending) >= WRITE_BATCH:
                        _flush(pending)
        _flush(pending)
    except BaseException:
        _delete_files([name for p in pending for name in p.new_files])
        raise
    finally:
        bar.close()

    summary.ok = sum(1 for status, _ in outcomes.values() if status == FaceImage.Status.OK)
    summary.no_face = [
        p for p, (status, _) in outcomes.items() if status == FaceImage.Status.NO_FACE
    ]
    summary.unreadable = [
        (p, message)
        for p, (status, message) in outcomes.items()
        if status == FaceImage.Status.UNREADABLE
    ]
    dataset.fingerprint = _dataset_fingerprint(dataset)
    dataset.imported_at = timezone.now()
    dataset.save(update_fields=["fingerprint", "imported_at"])
    summary.stage_ms = dict(stage_ms)
    summary.seconds = time.perf_counter() - started
    return summary


# --- FVR methods: eigenbasis fitting and reconstructions -------------------------------------
# Torch is imported inside these functions: the survey imports nothing from here, and
# importing this module must stay cheap for `migrate` and the import command.


def _aligned_pixels(images: list[FaceImage]) -> Any:
    """The stored aligned 112×112 crops as one uint8 array (N, 112, 112, 3)."""
    import numpy as np

    out = []
    for image in images:
        with image.aligned.open("rb") as handle:
            out.append(alignment.decode_rgb(handle.read()))
    return np.stack(out)


def _config_hash(config: dict, **provenance: str) -> str:
    text = json.dumps({"config": config, **provenance}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def eigenbasis_train(
    *,
    dataset: str,
    split: str = Split.TRAIN,
    method: str = "autoencoder",
    preset: str = "paper",
    components: int | None = None,
    epochs: int | None = None,
    limit_images: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> ReconstructorArtifact:
    """Fit the Eigenfaces decoder and mean face on a split's aligned faces; store the file.

    Idempotent: the same fitted file (same SHA-256) returns the existing row.
    """
    from dataclasses import asdict, replace

    from reconstruction.eigenbasis import EigenBasisConfig, fit_eigenbasis

    source = FaceDataset.objects.get(name=dataset)
    rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split=split)
        .order_by("identity__name", "relative_path")[:limit_images]
    )
    if len(rows) < 2:
        raise ValueError(
            f"dataset {dataset!r} has {len(rows)} aligned faces in split {split!r}; "
            "an eigenbasis needs at least two"
        )
    config = EigenBasisConfig.tiny(method) if preset == "tiny" else EigenBasisConfig(method)
    if components is not None:
        config = replace(config, components=components)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    started = time.perf_counter()
    basis = fit_eigenbasis(
        _aligned_pixels(rows), config=config, seed=seed, device=device, progress=progress
    )
    basis.meta.update(dataset=source.name, dataset_fingerprint=source.fingerprint, split=str(split))
    data = basis.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    existing = ReconstructorArtifact.objects.filter(
        method="eigenfaces", kind=ReconstructorArtifact.Kind.EIGENBASIS, sha256=digest
    ).first()
    if existing is not None:
        return existing
    artifact = ReconstructorArtifact(
        method="eigenfaces",
        kind=ReconstructorArtifact.Kind.EIGENBASIS,
        dataset=source,
        split=split,
        n_images=len(rows),
        fitting=config.method,
        config=asdict(config),
        seed=seed,
        device=device,
        metrics={
            "components": basis.components,
            "data_components": basis.data_components,
            "losses": basis.meta.get("losses", []),
            "dataset_fingerprint": source.fingerprint,
        },
        sha256=digest,
        seconds=time.perf_counter() - started,
    )
    artifact.file.save("basis.pt", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            artifact.save()
    except BaseException:
        _delete_files([artifact.file.name])
        raise
    return artifact


@dataclass
class ReconstructSummary:
    """What `reconstruct_targets` did."""

    targets: int = 0
    created: int = 0
    skipped: int = 0
    cosines: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _load_artifact(artifact: ReconstructorArtifact | None, device: str) -> Any:
    if artifact is None:
        return None
    from reconstruction.eigenbasis import EigenBasis

    with artifact.file.open("rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ValueError(f"artifact #{artifact.pk}: file does not match its SHA-256")
    if artifact.kind == ReconstructorArtifact.Kind.EIGENBASIS:
        return EigenBasis.from_bytes(data, device=device)
    from reconstruction.methods.parametric import load

    return load(artifact.method, data, device)


def reconstruction_create(
    *,
    target: FaceImage,
    method: str,
    recognizer: str,
    config: Any,
    seed: int,
    device: str = "cpu",
    artifact: ReconstructorArtifact | None = None,
    loaded_artifact: Any = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> tuple[Reconstruction, bool]:
    """Reconstruct one target image from F's vector of it; idempotent per
    (target, method, F, config hash, seed). Returns (row, created)."""
    from dataclasses import asdict

    from reconstruction.methods import get_method
    from reconstruction.recognizers import get_recognizer

    entry = get_method(method)
    engine = get_recognizer(recognizer)
    config_dict = asdict(config)
    config_hash = _config_hash(
        config_dict,
        artifact_sha256=artifact.sha256 if artifact else "",
        recognizer_sha256=engine.weights_sha256,
    )
    lookup = {
        "target": target,
        "method": method,
        "recognizer": recognizer,
        "config_hash": config_hash,
        "seed": seed,
    }
    existing = Reconstruction.objects.filter(**lookup).first()
    if existing is not None:
        return existing, False
    if loaded_artifact is None:
        loaded_artifact = _load_artifact(artifact, device)
    vector = engine.embed(_aligned_pixels([target]), device=device)[0]  # (D,)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"{method}-{config_hash[:16]}-{target.pk}-{seed}.pt"
    result = entry.run(
        target=vector,
        recognizer=engine,
        artifact=loaded_artifact,
        config=config,
        seed=seed,
        device=device,
        progress=progress,
        checkpoint=checkpoint,
    )
    row = Reconstruction(
        **lookup,
        recognizer_sha256=engine.weights_sha256,
        artifact=artifact,
        config=config_dict,
        device=device,
        cosine=result.cosine,
        queries=result.queries,
        seconds=result.seconds,
        forward_seconds=result.forward_seconds,
        details=result.details,
    )
    name = f"{target.pk}-{config_hash[:12]}-s{seed}.png"
    row.image.save(name, ContentFile(_png(result.image)), save=False)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        # Another worker finished the same reconstruction first: keep theirs.
        _delete_files([row.image.name])
        return Reconstruction.objects.get(**lookup), False
    except BaseException:
        _delete_files([row.image.name])
        raise
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return row, True


def _artifact_choose(
    *, method: str, recognizer: str, dataset: FaceDataset, artifact_id: int | None
) -> ReconstructorArtifact:
    """The artifact ``method`` runs with: ``artifact_id``, else the newest of the method
    (trained on ``dataset`` first) — for trained networks, the newest trained on F's vectors."""
    from reconstruction.methods import PARAMETRIC

    if artifact_id is not None:
        artifact = ReconstructorArtifact.objects.filter(pk=artifact_id).first()
        if artifact is None:
            raise ReconstructorArtifact.DoesNotExist(f"no artifact #{artifact_id}")
        if artifact.method != method:
            raise ValueError(
                f"artifact #{artifact_id} belongs to {artifact.method!r}, not {method!r}"
            )
        if method in PARAMETRIC and artifact.recognizer != recognizer:
            raise ValueError(
                f"artifact #{artifact_id} was trained on {artifact.recognizer!r} vectors, "
                f"not {recognizer!r}'s"
            )
        return artifact
    artifacts = ReconstructorArtifact.objects.filter(method=method)
    if method in PARAMETRIC:
        artifacts = artifacts.filter(recognizer=recognizer)
    artifact = artifacts.filter(dataset=dataset).first() or artifacts.first()
    if artifact is None:
        if method in PARAMETRIC:
            raise ReconstructorArtifact.DoesNotExist(
                f"no {method} weights trained on {recognizer} vectors: run "
                f"train_reconstructor --method {method} --recognizer {recognizer} first"
            )
        raise ReconstructorArtifact.DoesNotExist(
            f"no {method} artifact: run train_eigenbasis (or train_reconstructor) first"
        )
    return artifact


def reconstruct_targets(
    *,
    dataset: str,
    method: str,
    recognizer: str,
    targets: int | None = None,
    preset: str = "paper",
    seed: int = 0,
    device: str = "cpu",
    artifact_id: int | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> ReconstructSummary:
    """Reconstruct the first image of each target-split identity (by name), skipping done ones."""
    from tqdm import tqdm

    from reconstruction.methods import PARAMETRIC, config_from_preset, get_method
    from reconstruction.methods.parametric import config_from_artifact

    started = time.perf_counter()
    source = FaceDataset.objects.get(name=dataset)
    entry = get_method(method)
    artifact = _artifact_choose(
        method=method, recognizer=recognizer, dataset=source, artifact_id=artifact_id
    )
    if method in PARAMETRIC:
        # A trained network is its training config: record that, whatever the preset.
        config = config_from_artifact(method, artifact.config)
    else:
        config = config_from_preset(entry.config, preset)
    first_images = (
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split=Split.TARGET)
        .order_by("identity__name", "relative_path")
    )
    chosen: dict[int, FaceImage] = {}
    for image in first_images:
        chosen.setdefault(image.identity_id, image)
        if targets is not None and len(chosen) >= targets:
            break
    summary = ReconstructSummary(targets=len(chosen))
    loaded = None
    for image in tqdm(chosen.values(), desc=f"{method} targets", disable=not progress):
        if loaded is None:
            loaded = _load_artifact(artifact, device)
        row, created = reconstruction_create(
            target=image,
            method=method,
            recognizer=recognizer,
            config=config,
            seed=seed,
            device=device,
            artifact=artifact,
            loaded_artifact=loaded,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
        )
        summary.created += created
        summary.skipped += not created
        summary.cosines.append(row.cosine)
    summary.seconds = time.perf_counter() - started
    return summary


# --- Parametric reconstructors: training ------------------------------------------------------


class ReconstructorTrainError(ValueError):
    """A reconstructor cannot be trained as asked (unknown method, no training faces)."""


@dataclass
class ReconstructorTrainSummary:
    """What `reconstructor_train` did; ``artifact`` is None while training is unfinished."""

    method: str
    n_images: int
    artifact: ReconstructorArtifact | None = None
    created: bool = False
    steps: int = 0
    total_steps: int = 0
    start_step: int = 0
    vectors_stored: int = 0  # reused Embedding rows
    vectors_computed: int = 0
    checkpoint_dir: Path | None = None
    seconds: float = 0.0


# Stored Embedding rows are reused only when F was fed the same 112×112 aligned crop that
# `reconstruction_create` embeds targets from (the text `reconstruction.embedding` records).
EMBEDDED_ALIGNED_INPUT = "input: stored 112x112 ArcFace crop (PNG) | "
HISTORY_KEPT = 200  # loss-history windows kept in the artifact's metrics


def _stored_crops(images: list[FaceImage], crop: str, *, progress: bool, desc: str) -> Any:
    """A split's stored crops (``aligned`` or ``crop160``) as one uint8 (N, S, S, 3) array."""
    import numpy as np
    from tqdm import tqdm

    out = None
    for i, image in enumerate(tqdm(images, desc=desc, unit="img", disable=not progress)):
        with getattr(image, crop).open("rb") as handle:
            pixels = alignment.decode_rgb(handle.read())
        if out is None:
            out = np.empty((len(images), *pixels.shape), dtype=np.uint8)
        out[i] = pixels
    return out


def _training_vectors(
    images: list[FaceImage],
    aligned: Any,
    *,
    engine: Any,
    recognizer: str,
    device: str,
    batch_size: int = 256,
) -> tuple[Any, int]:
    """F's vectors of the aligned crops: stored Embedding rows where valid, else computed.
    Returns (vectors (N, D) float32, number reused)."""
    import numpy as np

    preprocessing = EMBEDDED_ALIGNED_INPUT + engine.preprocessing
    ids = {image.pk: i for i, image in enumerate(images)}
    sources = {image.pk: image.sha256 for image in images}
    stored: dict[int, Any] = {}
    rows = Embedding.objects.filter(
        image__dataset_id=images[0].dataset_id,
        recognizer=recognizer,
        weights_sha256=engine.weights_sha256,
        preprocessing=preprocessing,
    ).values_list("image_id", "source_sha256", "vector")
    for image_id, source, vector in rows.iterator(chunk_size=2000):
        if image_id in ids and sources[image_id] == source:
            stored[ids[image_id]] = np.frombuffer(bytes(vector), dtype="<f4")
    missing = [i for i in range(len(images)) if i not in stored]
    computed: dict[int, Any] = {}
    for first in range(0, len(missing), batch_size):
        chunk = missing[first : first + batch_size]
        for i, vector in zip(chunk, engine.embed(aligned[chunk], device=device), strict=True):
            computed[i] = vector
    vectors = np.stack([stored[i] if i in stored else computed[i] for i in range(len(images))])
    return vectors.astype(np.float32), len(stored)


def _signed_unit(pixels: Any) -> Any:
    """uint8 (N, S, S, 3) -> float tensor (N, 3, S, S) in [-1, 1]."""
    import torch

    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)


def reconstructor_train(
    *,
    method: str,
    dataset: str,
    recognizer: str,
    split: str = Split.TRAIN,
    preset: str = "paper",
    epochs: float | None = None,
    max_steps: int | None = None,
    limit_images: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> ReconstructorTrainSummary:
    """Train a parametric reconstructor on F's vectors of a split's aligned faces; store it.

    Training data: the split's aligned faces (the 160 crop for NBNet) in [-1, 1] and F's
    vectors of their 112 crops (stored Embedding rows reused when valid). Idempotent: a
    finished run with the same method, config, training faces, F, weights and seed returns
    its artifact without training. Interrupted or ``max_steps``-limited runs checkpoint under
    ``checkpoint_dir`` and resume on the next call; the artifact is stored only once training
    reaches its configured length.
    """
    import shutil

    from django.conf import settings

    from reconstruction.methods import PARAMETRIC, parametric
    from reconstruction.methods.training import config_dict
    from reconstruction.methods.vec2face import StudentConfig
    from reconstruction.recognizers import get_recognizer

    started = time.perf_counter()
    if method not in PARAMETRIC:
        raise ReconstructorTrainError(
            f"unknown parametric method {method!r}; use one of {', '.join(sorted(PARAMETRIC))}"
        )
    try:
        engine = get_recognizer(recognizer)
    except KeyError as exc:
        raise ReconstructorTrainError(str(exc.args[0])) from exc
    source = FaceDataset.objects.get(name=dataset)
    rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split=split)
        .order_by("identity__name", "relative_path")[:limit_images]
    )
    if not rows:
        raise ReconstructorTrainError(
            f"dataset {dataset!r} has no aligned faces in split {split!r} to train on"
        )
    try:
        config = parametric.config_for(method, preset, epochs=epochs, n_images=len(rows))
    except ValueError as exc:
        raise ReconstructorTrainError(str(exc)) from exc
    values = config_dict(config)
    data_digest = hashlib.sha256()
    for row in rows:
        data_digest.update(f"{row.relative_path}\t{row.sha256}\n".encode())
    run_key = _config_hash(
        values,
        method=method,
        dataset=source.name,
        split=str(split),
        data_sha256=data_digest.hexdigest(),
        recognizer=recognizer,
        recognizer_sha256=engine.weights_sha256,
        seed=str(seed),
        preset=preset,  # the Vec2Face student's size follows the preset
    )
    summary = ReconstructorTrainSummary(method=method, n_images=len(rows))
    done = ReconstructorArtifact.objects.filter(
        method=method, kind=ReconstructorArtifact.Kind.WEIGHTS, metrics__run_key=run_key
    ).first()
    if done is not None:
        summary.artifact = done
        summary.steps = summary.total_steps = done.metrics.get("steps", 0)
        summary.seconds = time.perf_counter() - started
        return summary

    run_dir = Path(checkpoint_dir or Path(settings.VAR_DIR) / "checkpoints")
    run_dir = run_dir / f"train-{method}-{run_key[:16]}"
    summary.checkpoint_dir = run_dir
    aligned = _stored_crops(rows, "aligned", progress=progress, desc="aligned faces")
    vectors, summary.vectors_stored = _training_vectors(
        rows, aligned, engine=engine, recognizer=recognizer, device=device
    )
    summary.vectors_computed = len(rows) - summary.vectors_stored
    crop = parametric.crop_for(method)
    pixels = (
        aligned
        if crop == "aligned"
        else _stored_crops(rows, crop, progress=progress, desc=f"{crop} faces")
    )
    del aligned
    images = _signed_unit(pixels)  # all faces in RAM as float32: see docs/full-scale.md
    del pixels
    import torch

    result, notes = parametric.train_method(
        method,
        config,
        torch.from_numpy(vectors),
        images,
        recognizer=recognizer,
        seed=seed,
        device=device,
        checkpoint_dir=run_dir,
        progress=progress,
        max_steps=max_steps,
        student_config=StudentConfig.tiny() if preset == "tiny" else None,
    )
    summary.steps, summary.total_steps = result.steps, result.total_steps
    summary.start_step = result.start_step
    if not result.complete:
        summary.seconds = time.perf_counter() - started
        return summary

    weights_path = parametric.save(run_dir / "weights.pt", result)
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    existing = ReconstructorArtifact.objects.filter(
        method=method, kind=ReconstructorArtifact.Kind.WEIGHTS, sha256=digest
    ).first()
    if existing is not None:
        summary.artifact = existing
        summary.seconds = time.perf_counter() - started
        shutil.rmtree(run_dir, ignore_errors=True)
        return summary
    every = max(1, len(result.history) // HISTORY_KEPT)
    history = result.history[::every]
    if result.history and history[-1] is not result.history[-1]:
        history.append(result.history[-1])
    artifact = ReconstructorArtifact(
        method=method,
        kind=ReconstructorArtifact.Kind.WEIGHTS,
        dataset=source,
        split=split,
        n_images=len(rows),
        fitting="wgan-gp" if method == "vec2face" else "adam",
        recognizer=recognizer,
        recognizer_sha256=engine.weights_sha256,
        config=values,
        seed=seed,
        device=result.device,
        metrics={
            "run_key": run_key,
            "preset": preset,
            "data_sha256": data_digest.hexdigest(),
            "dataset_fingerprint": source.fingerprint,
            "crop": crop,
            "vector_dim": int(vectors.shape[1]),
            "vectors_stored": summary.vectors_stored,
            "vectors_computed": summary.vectors_computed,
            "steps": result.steps,
            "history": history,
            "train_seconds": result.wall_s,
            **notes,
        },
        sha256=digest,
        seconds=time.perf_counter() - started,
    )
    artifact.file.save("weights.pt", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            artifact.save()
    except BaseException:
        _delete_files([artifact.file.name])
        raise
    shutil.rmtree(run_dir, ignore_errors=True)
    summary.artifact, summary.created = artifact, True
    summary.seconds = time.perf_counter() - started
    return summary


# --- Studies from reconstructions: F''s top-K as the survey's match sets -----------------------


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
    description: str = "",
    is_demo: bool = False,
    codes: dict[str, str] | None = None,
    progress: bool = True,
) -> StudyBuildSummary:
    """Create a draft study whose match sets are F''s identity-level top-K for reconstructions
    made with F; each records its provenance. See `reconstruction.study_builder`."""
    import secrets

    from tqdm import tqdm

    from reconstruction.recognizers import RECOGNIZERS, get_recognizer
    from reconstruction.study_builder import (
        GALLERY_SPLITS,
        StudyBuildError,
        file_sha256,
        gallery_enrol,
        gallery_pool,
        query_vectors,
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
    pixels = _aligned_pixels_of([row for _, _, row in picks])
    queries = query_vectors(recognizer=second, pixels=pixels, dataset=source)
    exclude = [[row.target_id] if exclude_source else [] for _, _, row in picks]
    top = gallery.search(queries, k=k, by="identity", exclude=exclude)
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
        "ranking": f"identity level: each identity's best image, top {k}",
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
                            f"the gallery returned fewer than {k} identities for "
                            f"reconstruction #{row.pk}: enrol more identities"
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
                    "candidates": listed,
                    "target_present": present,
                    "seed": seed,
                }
                if row.recognizer_sha256 != engine_f.weights_sha256:
                    provenance["F"]["note"] = "F's installed weights differ from this run's"
                created.append(
                    match_set_create(
                        study=study,
                        key=f"{method}-{names[identity_id]}"[:100],
                        method=method,
                        query_image=_stored_bytes(row.image),
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


def _stored_bytes(field: Any) -> bytes:
    """The bytes of a stored file (a FieldFile)."""
    with field.open("rb") as handle:
        return handle.read()


def _aligned_pixels_of(rows: list[Reconstruction]) -> Any:
    """The stored reconstruction images as one uint8 array (N, 112, 112, 3)."""
    import numpy as np

    out = []
    for row in rows:
        with row.image.open("rb") as handle:
            out.append(alignment.decode_rgb(handle.read()))
    return np.stack(out)


# --- Metric 1: top-K matching ------------------------------------------------------------------


def _reconstruction_vectors(
    rows: list[Any], *, recognizer: str, device: str, cache_dir: Path | None
) -> Any:
    """F' vectors of stored reconstruction images, cached by image name in an .npz file."""
    import numpy as np

    from reconstruction.recognizers import get_recognizer

    engine = get_recognizer(recognizer)
    cache: dict[str, Any] = {}
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{recognizer}-{engine.weights_sha256[:16]}.npz"
        if cache_file.exists():
            with np.load(cache_file) as stored:
                cache = {name: stored[name] for name in stored.files}
    missing = [row for row in rows if row.image.name not in cache]
    if missing:
        pixels = []
        for row in missing:
            with row.image.open("rb") as handle:
                pixels.append(alignment.decode_rgb(handle.read()))  # (112, 112, 3)
        vectors = engine.embed(np.stack(pixels), device=device)
        cache.update({row.image.name: v for row, v in zip(missing, vectors, strict=True)})
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache_file, **cache)
    return np.stack([cache[row.image.name] for row in rows]) if rows else None


def _json_safe(value: Any) -> Any:
    """NaN → None (PostgreSQL's jsonb has no NaN); numpy scalars → Python."""
    import math

    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def topk_evaluate(
    *,
    dataset: str,
    recognizer: str,
    out_dir: Path,
    methods: list[str] | None = None,
    reconstructions_of: str | None = None,
    ks: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40),
    ns: tuple[int, ...] = (50, 100, 500, 1000, 2500, 5000),
    k: int = 25,
    n: int = 1000,
    sweep: str = "both",
    trials: int = 10,
    seed: int = 0,
    include_source: bool = False,
    threshold: float | None = None,
    by: str = "image",
    baselines: bool = True,
    cache_dir: Path | None = None,
    device: str = "cpu",
) -> Any:
    """Metric 1 for stored reconstructions in F' = ``recognizer``; files + a TopKRun.

    The gallery pool is every ok target- and gallery-split image of ``dataset`` (train
    identities never enrol); each trial enrols N − 1 random distractor identities plus the
    query's true identity. Baselines: the original photo of each target ("photo") and a
    random other face of the pool ("random"). Reconstruction images are embedded in F' and
    cached in ``cache_dir``; gallery vectors are the stored Embedding rows.
    """
    import numpy as np

    from reconstruction import metric1
    from reconstruction.gallery import stored_vectors
    from reconstruction.models import TopKRun
    from reconstruction.recognizers import get_recognizer

    started = time.perf_counter()
    source = FaceDataset.objects.get(name=dataset)
    engine = get_recognizer(recognizer)
    pool_rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split__in=[Split.TARGET, Split.GALLERY])
        .order_by("identity_id", "relative_path")
        .values_list("id", "identity_id")
    )
    if not pool_rows:
        raise ValueError(f"dataset {dataset!r} has no target or gallery images")
    pool_ids = np.array([r[0] for r in pool_rows], dtype=np.int64)
    pool_labels = np.array([r[1] for r in pool_rows], dtype=np.int64)
    pool = stored_vectors(
        pool_ids.tolist(), recognizer=recognizer, weights_sha256=engine.weights_sha256
    )
    position = {int(i): p for p, i in enumerate(pool_ids)}

    rows = Reconstruction.objects.filter(target__dataset=source).select_related("target")
    if methods:
        rows = rows.filter(method__in=methods)
    if reconstructions_of:
        rows = rows.filter(recognizer=reconstructions_of)
    rows = [
        r
        for r in rows.order_by("method", "recognizer", "target_id", "id")
        if r.target_id in position
    ]
    if not rows:
        raise ValueError("no reconstructions of target- or gallery-split images match")
    several_f = len({r.recognizer for r in rows}) > 1
    groups = [f"{r.method}/{r.recognizer}" if several_f else r.method for r in rows]
    vectors = [
        _reconstruction_vectors(rows, recognizer=recognizer, device=device, cache_dir=cache_dir)
    ]
    truth = [r.target.identity_id for r in rows]
    sources = [r.target_id for r in rows]
    if baselines:
        targets = list(dict.fromkeys(r.target_id for r in rows))
        target_identity = {r.target_id: r.target.identity_id for r in rows}
        vectors.append(pool[[position[t] for t in targets]])
        groups += ["photo"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += targets
        rng = np.random.default_rng([seed, 1])
        query_identities = set(truth)
        others = np.flatnonzero(~np.isin(pool_labels, list(query_identities)))
        picked = rng.choice(others, size=len(targets), replace=len(others) < len(targets))
        vectors.append(pool[picked])
        groups += ["random"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += pool_ids[picked].tolist()
    queries = np.concatenate(vectors)
    group = np.array(groups, dtype=object)

    variants = [("excluded", False)] + ([("included", True)] if include_source else [])
    out_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for variant_index, (variant, include) in enumerate(variants):
        scored = metric1.ScorePool(
            queries,
            truth=truth,
            sources=sources,
            pool=pool,
            pool_labels=pool_labels,
            pool_image_ids=pool_ids,
            include_source=include,
        )
        eligible = scored.distractor_columns()
        plan = []
        if sweep in ("k", "both"):
            plan.append(("k", n, tuple(ks)))
        if sweep in ("n", "both"):
            plan += [("n", size, (k,)) for size in ns]
        for axis, size, sweep_ks in plan:
            if size - 1 > len(eligible):
                if variant_index == 0:
                    notes.append(f"N = {size} skipped: only {len(eligible)} distractor identities")
                continue
            rng = np.random.default_rng([seed, size])  # same galleries for both variants
            results = scored.draw(
                n=size, ks=sweep_ks, trials=trials, rng=rng, threshold=threshold, by=by
            )
            for row in metric1.summarize(results, group=group):
                out_rows.append({"engine": recognizer, "variant": variant, "sweep": axis, **row})

    out_dir = Path(out_dir)
    stem = f"metric1_{recognizer}"
    metric1.write_csv(out_rows, out_dir / f"{stem}.csv")
    title = f"Metric 1: top-K matching in {recognizer} on {dataset}"
    notes = [
        f"{len(rows)} reconstructions ({', '.join(sorted({r.method for r in rows}))}), "
        f"pool {len(pool_ids)} images of {len(set(pool_labels.tolist()))} identities, "
        f"{trials} gallery draws per N, {by}-level top-K, threshold {threshold}",
        "intervals: 2.5–97.5 percentiles over gallery draws (Wilson for pooled in the CSV)",
        *notes,
    ]
    metric1.write_markdown(
        out_rows, out_dir / f"{stem}.md", title=title, notes=notes, reference=(n, k)
    )
    figures = metric1.write_plots(out_rows, out_dir, reference=(n, k), stem=stem)
    seconds = time.perf_counter() - started
    config = {
        "dataset": dataset,
        "recognizer": recognizer,
        "methods": methods or [],
        "reconstructions_of": reconstructions_of or "",
        "ks": list(ks),
        "ns": list(ns),
        "k": k,
        "n": n,
        "sweep": sweep,
        "trials": trials,
        "seed": seed,
        "include_source": include_source,
        "threshold": threshold,
        "by": by,
        "baselines": baselines,
        "dataset_fingerprint": source.fingerprint,
        "reconstruction_ids": [r.pk for r in rows],
    }
    return TopKRun.objects.create(
        dataset=source,
        recognizer=recognizer,
        recognizer_sha256=engine.weights_sha256,
        methods=sorted({r.method for r in rows}),
        reconstructions_of=reconstructions_of or "",
        gallery_n=n,
        k=k,
        ks=list(ks),
        ns=list(ns),
        sweep=sweep,
        trials=trials,
        seed=seed,
        include_source=include_source,
        threshold=threshold,
        ranking=by,
        config=config,
        results=_json_safe(
            {
                "rows": out_rows,
                "notes": notes,
                "files": [
                    str(p) for p in [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", *figures]
                ],
            }
        ),
        output_dir=str(out_dir),
        queries=len(queries),
        seconds=seconds,
    )
