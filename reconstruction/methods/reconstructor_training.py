"""Training the parametric reconstructors (NBNet, Naive, Vec2Face) on F's vectors of faces.

`reconstructor_train` keys a run by its config, training faces, F, weights and seed;
checkpoints and resumes it; and stores the finished weights as a ReconstructorArtifact
whose metrics record the training data and the black-box status of its feature network.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconstruction.methods.services import split_faces
from reconstruction.models import Embedding, FaceDataset, FaceImage, ReconstructorArtifact, Split
from reconstruction.storage import artifact_store, config_hash, stored_crops


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


@dataclass
class _Run:
    """One training run as asked: what it trains on, with which config, and its key."""

    method: str
    recognizer: str
    engine: Any  # F
    source: FaceDataset
    split: str
    rows: list[FaceImage]
    preset: str
    seed: int
    config: Any
    values: dict[str, Any]  # the config as stored
    data_sha256: str
    run_key: str


def _recognizer_get(method: str, recognizer: str) -> Any:
    """F, after checking that ``method`` is a parametric one."""
    from reconstruction.methods import PARAMETRIC
    from reconstruction.recognizers.registry import get_recognizer

    if method not in PARAMETRIC:
        raise ReconstructorTrainError(
            f"unknown parametric method {method!r}; use one of {', '.join(sorted(PARAMETRIC))}"
        )
    try:
        return get_recognizer(recognizer)
    except KeyError as exc:
        raise ReconstructorTrainError(str(exc.args[0])) from exc


def _reconstructor_config(
    method: str, preset: str, *, epochs: float | None, n_images: int, recognizer: str, **options
) -> Any:
    """The preset's config with the options applied and the feature network resolved."""
    from reconstruction.methods import parametric

    try:
        config = parametric.config_for(method, preset, epochs=epochs, n_images=n_images)
        config = parametric.config_with_options(method, config, **options)
        return parametric.resolve_feature_network(method, config, recognizer=recognizer)
    except (ValueError, KeyError) as exc:
        raise ReconstructorTrainError(str(exc.args[0] if exc.args else exc)) from exc


def _faces_digest(rows: list[FaceImage]) -> str:
    """SHA-256 of the training faces' paths and checksums, in order."""
    data_digest = hashlib.sha256()
    for row in rows:
        data_digest.update(f"{row.relative_path}\t{row.sha256}\n".encode())
    return data_digest.hexdigest()


def _run_prepare(
    *,
    method: str,
    dataset: str,
    recognizer: str,
    split: str,
    preset: str,
    epochs: float | None,
    limit_images: int | None,
    seed: int,
    options: dict[str, Any],
) -> _Run:
    """Check the request, read the training faces, build the config and key the run."""
    from reconstruction.training import config_dict

    engine = _recognizer_get(method, recognizer)
    source, rows = split_faces(dataset, split, limit_images)
    if not rows:
        raise ReconstructorTrainError(
            f"dataset {dataset!r} has no aligned faces in split {split!r} to train on"
        )
    config = _reconstructor_config(
        method, preset, epochs=epochs, n_images=len(rows), recognizer=recognizer, **options
    )
    values = config_dict(config)
    data_sha256 = _faces_digest(rows)
    run_key = config_hash(
        values,
        method=method,
        dataset=source.name,
        split=str(split),
        data_sha256=data_sha256,
        recognizer=recognizer,
        recognizer_sha256=engine.weights_sha256,
        seed=str(seed),
        preset=preset,  # the Vec2Face student's size follows the preset
    )
    return _Run(
        method,
        recognizer,
        engine,
        source,
        split,
        rows,
        preset,
        seed,
        config,
        values,
        data_sha256,
        run_key,
    )


def _training_data(
    run: _Run, *, device: str, progress: bool, summary: ReconstructorTrainSummary
) -> tuple[Any, Any, str]:
    """F's vectors (N, D) of the aligned crops, the method's crops (N, 3, S, S) in [-1, 1] and
    the crop's name."""
    from reconstruction.methods import parametric
    from reconstruction.training import signed_unit

    rows = run.rows
    aligned = stored_crops(rows, "aligned", progress=progress, desc="aligned faces")
    vectors, summary.vectors_stored = _training_vectors(
        rows, aligned, engine=run.engine, recognizer=run.recognizer, device=device
    )
    summary.vectors_computed = len(rows) - summary.vectors_stored
    crop = parametric.crop_for(run.method)
    pixels = (
        aligned
        if crop == "aligned"
        else stored_crops(rows, crop, progress=progress, desc=f"{crop} faces")
    )
    del aligned
    images = signed_unit(pixels)  # all faces in RAM as float32: see docs/full-scale.md
    del pixels
    return vectors, images, crop


def _history_thinned(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """About HISTORY_KEPT evenly spaced loss windows, always ending with the last one."""
    every = max(1, len(history) // HISTORY_KEPT)
    kept = history[::every]
    if history and kept[-1] is not history[-1]:
        kept.append(history[-1])
    return kept


def _weights_artifact(
    run: _Run, result: Any, *, metrics: dict[str, Any], digest: str, started: float
) -> ReconstructorArtifact:
    """The (unsaved) weights artifact of a finished training run."""
    return ReconstructorArtifact(
        method=run.method,
        kind=ReconstructorArtifact.Kind.WEIGHTS,
        dataset=run.source,
        split=run.split,
        n_images=len(run.rows),
        fitting="wgan-gp" if run.method == "vec2face" else "adam",
        recognizer=run.recognizer,
        recognizer_sha256=run.engine.weights_sha256,
        config=run.values,
        seed=run.seed,
        device=result.device,
        metrics=metrics,
        sha256=digest,
        seconds=time.perf_counter() - started,
    )


def _run_metrics(
    run: _Run,
    result: Any,
    *,
    crop: str,
    vectors: Any,
    summary: ReconstructorTrainSummary,
    notes: dict[str, Any],
) -> dict[str, Any]:
    """The artifact's metrics: the run's key, its training data, its loss history and notes."""
    return {
        "run_key": run.run_key,
        "preset": run.preset,
        "data_sha256": run.data_sha256,
        "dataset_fingerprint": run.source.fingerprint,
        "crop": crop,
        "vector_dim": int(vectors.shape[1]),
        "vectors_stored": summary.vectors_stored,
        "vectors_computed": summary.vectors_computed,
        "steps": result.steps,
        "history": _history_thinned(result.history),
        "train_seconds": result.wall_s,
        **notes,
    }


def _run_train(
    run: _Run,
    *,
    summary: ReconstructorTrainSummary,
    device: str,
    progress: bool,
    max_steps: int | None,
    started: float,
) -> None:
    """Train (or resume) in ``summary.checkpoint_dir``; once training reaches its configured
    length, store the weights (or find the same file stored) and remove the checkpoint."""
    import shutil

    import torch

    from reconstruction.methods import parametric
    from reconstruction.methods.vec2face import StudentConfig

    run_dir = summary.checkpoint_dir
    vectors, images, crop = _training_data(run, device=device, progress=progress, summary=summary)
    result, notes = parametric.train_method(
        run.method,
        run.config,
        torch.from_numpy(vectors),
        images,
        recognizer=run.recognizer,
        seed=run.seed,
        device=device,
        checkpoint_dir=run_dir,
        progress=progress,
        max_steps=max_steps,
        student_config=StudentConfig.tiny() if run.preset == "tiny" else None,
    )
    summary.steps, summary.total_steps = result.steps, result.total_steps
    summary.start_step = result.start_step
    if not result.complete:
        return
    data = parametric.save(run_dir / "weights.pt", result).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    summary.artifact = ReconstructorArtifact.objects.filter(
        method=run.method, kind=ReconstructorArtifact.Kind.WEIGHTS, sha256=digest
    ).first()
    if summary.artifact is None:
        metrics = _run_metrics(
            run, result, crop=crop, vectors=vectors, summary=summary, notes=notes
        )
        summary.artifact = _weights_artifact(
            run, result, metrics=metrics, digest=digest, started=started
        )
        artifact_store(summary.artifact, "weights.pt", data)
        summary.created = True
    shutil.rmtree(run_dir, ignore_errors=True)


def _finished(run: _Run, summary: ReconstructorTrainSummary) -> bool:
    """Fill the summary from the artifact of a finished run with this key, if there is one."""
    done = ReconstructorArtifact.objects.filter(
        method=run.method, kind=ReconstructorArtifact.Kind.WEIGHTS, metrics__run_key=run.run_key
    ).first()
    if done is not None:
        summary.artifact = done
        summary.steps = summary.total_steps = done.metrics.get("steps", 0)
    return done is not None


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
    from django.conf import settings

    started = time.perf_counter()
    run = _run_prepare(
        method=method,
        dataset=dataset,
        recognizer=recognizer,
        split=split,
        preset=preset,
        epochs=epochs,
        limit_images=limit_images,
        seed=seed,
        options={
            "perceptual_mode": perceptual_mode,
            "feature_network": feature_network,
            "vgg19_weights": vgg19_weights,
            "allow_white_box": allow_white_box,
        },
    )
    summary = ReconstructorTrainSummary(method=method, n_images=len(run.rows))
    if not _finished(run, summary):
        run_dir = Path(checkpoint_dir or Path(settings.VAR_DIR) / "checkpoints")
        summary.checkpoint_dir = run_dir / f"train-{method}-{run.run_key[:16]}"
        _run_train(
            run,
            summary=summary,
            device=device,
            progress=progress,
            max_steps=max_steps,
            started=started,
        )
    summary.seconds = time.perf_counter() - started
    return summary
