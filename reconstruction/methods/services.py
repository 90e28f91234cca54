"""Reconstructions: fitting the Eigenfaces basis and running the FVR methods on targets.

Training the parametric reconstructors is `reconstructor_training.reconstructor_train`.
Torch is imported inside these functions: importing this module must stay cheap for
`migrate` and the import command.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Reconstruction,
    ReconstructorArtifact,
    Split,
)
from reconstruction.storage import (
    artifact_store,
    config_hash,
    files_delete,
    png_bytes,
    stored_crops,
)

logger = logging.getLogger(__name__)


def _aligned_pixels(images: list[FaceImage]) -> Any:
    """The stored aligned 112×112 crops as one uint8 array (N, 112, 112, 3)."""
    return stored_crops(images, "aligned")


def split_faces(
    dataset: str, split: str, limit_images: int | None
) -> tuple[FaceDataset, list[FaceImage]]:
    """The dataset and its split's ok faces by identity then path (the first ``limit_images``)."""
    source = FaceDataset.objects.get(name=dataset)
    rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split=split)
        .order_by("identity__name", "relative_path")[:limit_images]
    )
    return source, rows


def _eigenbasis_config(method: str, preset: str, components: int | None, epochs: int | None) -> Any:
    """The preset's EigenBasisConfig for ``method`` with the given overrides."""
    from dataclasses import replace

    from reconstruction.methods.eigenbasis import EigenBasisConfig

    config = EigenBasisConfig.tiny(method) if preset == "tiny" else EigenBasisConfig(method)
    if components is not None:
        config = replace(config, components=components)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    return config


def _eigenbasis_artifact(
    basis: Any,
    *,
    source: FaceDataset,
    split: str,
    n_images: int,
    config: Any,
    seed: int,
    device: str,
    digest: str,
    started: float,
) -> ReconstructorArtifact:
    """The (unsaved) artifact row of a fitted basis, with its fitting settings and losses."""
    from dataclasses import asdict

    return ReconstructorArtifact(
        method="eigenfaces",
        kind=ReconstructorArtifact.Kind.EIGENBASIS,
        dataset=source,
        split=split,
        n_images=n_images,
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
    from reconstruction.methods.eigenbasis import fit_eigenbasis

    source, rows = split_faces(dataset, split, limit_images)
    if len(rows) < 2:
        raise ValueError(
            f"dataset {dataset!r} has {len(rows)} aligned faces in split {split!r}; "
            "an eigenbasis needs at least two"
        )
    config = _eigenbasis_config(method, preset, components, epochs)
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
    artifact = _eigenbasis_artifact(
        basis,
        source=source,
        split=split,
        n_images=len(rows),
        config=config,
        seed=seed,
        device=device,
        digest=digest,
        started=started,
    )
    artifact_store(artifact, "basis.pt", data)
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
    from reconstruction.methods.eigenbasis import EigenBasis

    with artifact.file.open("rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ValueError(f"artifact #{artifact.pk}: file does not match its SHA-256")
    if artifact.kind == ReconstructorArtifact.Kind.EIGENBASIS:
        return EigenBasis.from_bytes(data, device=device)
    from reconstruction.methods.parametric import load

    return load(artifact.method, data, device)


def _threat_model(artifact: ReconstructorArtifact | None) -> dict[str, Any]:
    """What a trained reconstructor's provenance says of F's access: the feature network
    whose gradients trained it, whether that was F (white-box) and whether that was allowed.
    Weights stored before this was recorded say ``unknown``; other artifacts add nothing."""
    if artifact is None or artifact.kind != ReconstructorArtifact.Kind.WEIGHTS:
        return {}
    metrics = artifact.metrics or {}
    return {
        "feature_network": metrics.get("feature_network", "unknown"),
        "white_box": metrics.get("white_box"),
        "allow_white_box": metrics.get("allow_white_box"),
    }


def _reconstruction_row(
    result: Any,
    *,
    lookup: dict[str, Any],
    engine: Any,
    artifact: ReconstructorArtifact | None,
    values: dict[str, Any],
    device: str,
) -> Reconstruction:
    """The (unsaved) row of a method's result, with its provenance and F's threat model."""
    return Reconstruction(
        **lookup,
        recognizer_sha256=engine.weights_sha256,
        artifact=artifact,
        config=values,
        device=device,
        cosine=result.cosine,
        queries=result.queries,
        seconds=result.seconds,
        forward_seconds=result.forward_seconds,
        details={**result.details, **_threat_model(artifact)},
    )


def _reconstruction_save(
    row: Reconstruction, image: Any, *, lookup: dict
) -> tuple[Reconstruction, bool]:
    """Store the image, then the row; if another worker stored the same one first, keep theirs."""
    name = f"{row.target.pk}-{row.config_hash[:12]}-s{row.seed}.png"
    row.image.save(name, ContentFile(png_bytes(image)), save=False)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        # Another worker finished the same reconstruction first: keep theirs.
        files_delete([row.image.name])
        return Reconstruction.objects.get(**lookup), False
    except BaseException:
        files_delete([row.image.name])
        raise
    return row, True


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
    from reconstruction.recognizers.registry import get_recognizer

    entry = get_method(method)
    engine = get_recognizer(recognizer)
    values = asdict(config)
    key = config_hash(
        values,
        artifact_sha256=artifact.sha256 if artifact else "",
        recognizer_sha256=engine.weights_sha256,
    )
    lookup = {"target": target, "method": method, "recognizer": recognizer}
    lookup.update(config_hash=key, seed=seed)  # what makes a reconstruction the same one
    existing = Reconstruction.objects.filter(**lookup).first()
    if existing is not None:
        return existing, False
    if loaded_artifact is None:
        loaded_artifact = _load_artifact(artifact, device)
    vector = engine.embed(_aligned_pixels([target]), device=device)[0]  # (D,)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"{method}-{key[:16]}-{target.pk}-{seed}.pt"
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
    row = _reconstruction_row(
        result, lookup=lookup, engine=engine, artifact=artifact, values=values, device=device
    )
    row, created = _reconstruction_save(row, result.image, lookup=lookup)
    if created and checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return row, created


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


def _targets_config(
    method: str, *, artifact: ReconstructorArtifact, preset: str, iterations: int | None
) -> Any:
    """The config targets are reconstructed with: a trained network's own, or the preset's."""
    from reconstruction.methods import PARAMETRIC, config_from_preset, get_method
    from reconstruction.methods.parametric import config_from_artifact

    entry = get_method(method)
    if method in PARAMETRIC:
        # A trained network is its training config: record that, whatever the preset.
        return config_from_artifact(method, artifact.config, recognizer=artifact.recognizer)
    if iterations is not None:
        return entry.config.budget(iterations)
    return config_from_preset(entry.config, preset)


def _target_images(source: FaceDataset, targets: int | None) -> list[FaceImage]:
    """The first image (by path) of each target-split identity (by name); the first ``targets``."""
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
    return list(chosen.values())


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
    iterations: int | None = None,
) -> ReconstructSummary:
    """Reconstruct the first image of each target-split identity (by name), skipping done ones.

    ``iterations``: Eigenfaces only, a budget other than the preset's, in the paper's
    proportions (`EigenfacesConfig.budget`); recorded in each Reconstruction's config.
    """
    from tqdm import tqdm

    from reconstruction.methods import get_method

    started = time.perf_counter()
    if iterations is not None and method != "eigenfaces":
        raise ValueError(f"iterations applies to eigenfaces only, not {method}")
    source = FaceDataset.objects.get(name=dataset)
    get_method(method)  # an unknown method fails before any artifact is looked up
    artifact = _artifact_choose(
        method=method, recognizer=recognizer, dataset=source, artifact_id=artifact_id
    )
    config = _targets_config(method, artifact=artifact, preset=preset, iterations=iterations)
    chosen = _target_images(source, targets)
    summary = ReconstructSummary(targets=len(chosen))
    loaded = None
    for image in tqdm(chosen, desc=f"{method} targets", disable=not progress):
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
