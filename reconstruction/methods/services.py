"""Reconstructions: the Eigenfaces basis, parametric reconstructors, and attack runs."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from reconstruction.faces import alignment
from reconstruction.models import (
    Embedding,
    FaceDataset,
    FaceImage,
    Reconstruction,
    ReconstructorArtifact,
    Split,
)
from reconstruction.storage import files_delete, png_bytes

logger = logging.getLogger(__name__)


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


def _artifact_store(artifact: ReconstructorArtifact, name: str, data: bytes) -> None:
    """Write the artifact's file, then its row; a failed row write removes the file again."""
    artifact.file.save(name, ContentFile(data), save=False)
    try:
        with transaction.atomic():
            artifact.save()
    except BaseException:
        files_delete([artifact.file.name])
        raise


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

    from reconstruction.methods.eigenbasis import EigenBasisConfig, fit_eigenbasis

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
    _artifact_store(artifact, "basis.pt", data)
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
        details={**result.details, **_threat_model(artifact)},
    )
    name = f"{target.pk}-{config_hash[:12]}-s{seed}.png"
    row.image.save(name, ContentFile(png_bytes(result.image)), save=False)
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
    iterations: int | None = None,
) -> ReconstructSummary:
    """Reconstruct the first image of each target-split identity (by name), skipping done ones.

    ``iterations``: Eigenfaces only, a budget other than the preset's, in the paper's
    proportions (`EigenfacesConfig.budget`); recorded in each Reconstruction's config.
    """
    from tqdm import tqdm

    from reconstruction.methods import PARAMETRIC, config_from_preset, get_method
    from reconstruction.methods.parametric import config_from_artifact

    started = time.perf_counter()
    if iterations is not None and method != "eigenfaces":
        raise ValueError(f"iterations applies to eigenfaces only, not {method}")
    source = FaceDataset.objects.get(name=dataset)
    entry = get_method(method)
    artifact = _artifact_choose(
        method=method, recognizer=recognizer, dataset=source, artifact_id=artifact_id
    )
    if method in PARAMETRIC:
        # A trained network is its training config: record that, whatever the preset.
        config = config_from_artifact(method, artifact.config, recognizer=artifact.recognizer)
    elif iterations is not None:
        config = entry.config.budget(iterations)
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
# `reconstruction_create` embeds targets from (the text `reconstruction.recognizers.embedding`
# records).
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
    perceptual_mode: str | None = None,
    feature_network: str | None = None,
    vgg19_weights: Path | str | None = None,
    allow_white_box: bool = False,
) -> ReconstructorTrainSummary:
    """Train a parametric reconstructor on F's vectors of a split's aligned faces; store it.

    Training data: the split's aligned faces (the 160 crop for NBNet) in [-1, 1] and F's
    vectors of their 112 crops (stored Embedding rows reused when valid). Idempotent: a
    finished run with the same method, config, training faces, F, weights and seed returns
    its artifact without training. Interrupted or ``max_steps``-limited runs checkpoint under
    ``checkpoint_dir`` and resume on the next call; the artifact is stored only once training
    reaches its configured length.

    Options (``parametric.config_with_options``; ``None`` keeps the preset's value):
    ``perceptual_mode`` (NBNet: ``replace``, the original code, or ``added``, the paper's
    text), ``feature_network`` (NBNet's perceptual / Vec2Face's identity network: a
    recognizer, or ``student`` for Vec2Face), ``vgg19_weights`` (NBNet), ``allow_white_box``
    (permit F itself as that network; refused otherwise, as the paper's attacker has only
    black-box access to F). The feature network is resolved before the run is keyed, so the
    stored config names it, and the artifact's metrics record ``feature_network``,
    ``white_box`` and ``allow_white_box``.
    """
    import shutil

    from django.conf import settings

    from reconstruction.methods import PARAMETRIC, parametric
    from reconstruction.methods.vec2face import StudentConfig
    from reconstruction.recognizers.registry import get_recognizer
    from reconstruction.training import config_dict

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
        config = parametric.config_with_options(
            method,
            config,
            perceptual_mode=perceptual_mode,
            feature_network=feature_network,
            vgg19_weights=vgg19_weights,
            allow_white_box=allow_white_box,
        )
        config = parametric.resolve_feature_network(method, config, recognizer=recognizer)
    except (ValueError, KeyError) as exc:
        raise ReconstructorTrainError(str(exc.args[0] if exc.args else exc)) from exc
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
    _artifact_store(artifact, "weights.pt", data)
    shutil.rmtree(run_dir, ignore_errors=True)
    summary.artifact, summary.created = artifact, True
    summary.seconds = time.perf_counter() - started
    return summary


# --- Studies from reconstructions: F''s top-K as the survey's match sets -----------------------
