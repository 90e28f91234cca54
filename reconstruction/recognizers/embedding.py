"""Embed a dataset's aligned faces with a recognizer and store the vectors with provenance.

Each recognizer is fed the crop it expects (see `INPUTS`):

- ``mobileface`` (and any recognizer not listed): the stored 112×112 ArcFace-aligned crop;
- ``faceres``: the stored 160×160 crop (the same ArcFace framing with more pixels), which
  the recognizer resizes to its 224×224 input — closer to a 224 warp than an upscaled 112;
- ``dlib-resnet``: ``dlib.get_face_chip(photo, shape, size=150, padding=0.25)`` cut from the
  source photo with the stored dlib 5-point shape and face box — the chip dlib's ResNet was
  trained on (ArcFace crops lose accuracy there). The photo is read from the dataset root
  and must still match its recorded SHA-256.

An Embedding row is keyed by (image, recognizer, weights SHA-256) and records the image's
source SHA-256 and the preprocessing text; it is recomputed only when one of those differs
(new weights give new rows; rows for older weights are kept as history).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db import transaction

from reconstruction.models import Embedding, FaceDataset, FaceImage

__all__ = ["INPUTS", "EmbedError", "EmbedSummary", "InputSpec", "dataset_embed"]


class EmbedError(ValueError):
    """The embedding run cannot start (unknown dataset or recognizer, nothing imported)."""


class InputError(ValueError):
    """One image's input could not be built (source photo missing or changed)."""


@dataclass(frozen=True)
class InputSpec:
    """Which crop a recognizer is fed, described for the Embedding's provenance."""

    kind: str  # "aligned", "crop160" or "dlib-chip"
    description: str


INPUTS: dict[str, InputSpec] = {
    "dlib-resnet": InputSpec(
        "dlib-chip",
        "source photo (SHA-256 checked) cut by dlib.get_face_chip(size=150, padding=0.25) "
        "from the stored dlib 5-point shape and face box",
    ),
    "faceres": InputSpec("crop160", "stored 160x160 ArcFace crop (PNG)"),
    "mobileface": InputSpec("aligned", "stored 112x112 ArcFace crop (PNG)"),
}
DEFAULT_INPUT = InputSpec("aligned", "stored 112x112 ArcFace crop (PNG)")


@dataclass
class EmbedSummary:
    """What `dataset_embed` found and did."""

    dataset: str
    fingerprint: str
    recognizer: str
    weights_sha256: str
    preprocessing: str
    device: str
    images: int = 0  # ok images of the dataset
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of which in the recognizer

    @property
    def computed(self) -> int:
        """Images embedded in this run (new or recomputed)."""
        return self.created + self.updated

    @property
    def images_per_second(self) -> float:
        """Computed images per wall second (loading, embedding and writing)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    @property
    def embed_images_per_second(self) -> float:
        """Computed images per second spent in the recognizer."""
        return self.computed / self.embed_seconds if self.embed_seconds > 0 else 0.0


def _decode_stored(name: str) -> np.ndarray:
    from django.core.files.storage import default_storage
    from PIL import Image

    with default_storage.open(name, "rb") as handle, Image.open(handle) as image:
        return np.asarray(image.convert("RGB"))


def _dlib_chip(image: FaceImage, root: Path) -> np.ndarray:
    """dlib's 150×150 chip of the image's face, cut from the source photo."""
    from reconstruction.faces.alignment import UnreadableImageError, decode_rgb, dlib_chip

    try:
        data = (root / image.relative_path).read_bytes()
    except OSError as exc:
        raise InputError(f"source photo unreadable: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise InputError("source photo changed since import: re-run import_faces")
    if not image.dlib_landmarks or not image.box:
        raise InputError("no dlib 5-point shape stored: re-run import_faces")
    try:
        pixels = decode_rgb(data)
    except UnreadableImageError as exc:
        raise InputError(str(exc)) from exc
    return dlib_chip(pixels, image.box, np.asarray(image.dlib_landmarks))


def _input_loader(spec: InputSpec, dataset: FaceDataset) -> Callable[[FaceImage], np.ndarray]:
    if spec.kind == "dlib-chip":
        root = Path(dataset.root)
        return lambda image: _dlib_chip(image, root)
    if spec.kind == "crop160":
        return lambda image: _decode_stored(image.crop160.name)
    return lambda image: _decode_stored(image.aligned.name)


def _dataset_get(name: str) -> FaceDataset:
    """The imported dataset called ``name``, or an EmbedError naming the imported ones."""
    try:
        return FaceDataset.objects.get(name=name)
    except FaceDataset.DoesNotExist:
        known = ", ".join(FaceDataset.objects.values_list("name", flat=True)) or "none"
        raise EmbedError(f"unknown dataset {name!r}; imported: {known}") from None


def _recognizer_load(
    recognizer: str, *, device: str, weights: str | Path | None
) -> tuple[object, str]:
    """The recognizer's model and weights SHA-256, after checking its name and the device."""
    from reconstruction.recognizers.registry import ARCFACE_RECOGNIZERS, RECOGNIZERS, get_recognizer

    if recognizer not in RECOGNIZERS and recognizer not in ARCFACE_RECOGNIZERS:
        known = ", ".join([*sorted(RECOGNIZERS), *ARCFACE_RECOGNIZERS])
        raise EmbedError(f"unknown recognizer {recognizer!r}; known: {known}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise EmbedError(f"device {device!r} requested but CUDA is not available")
    try:
        model = get_recognizer(recognizer, weights)
        return model, model.weights_sha256
    except (KeyError, ValueError, OSError) as exc:
        raise EmbedError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from exc


def _ok_images(data: FaceDataset) -> list[FaceImage]:
    """The dataset's ok images in id order, with the fields the input loaders read."""
    images = list(
        FaceImage.objects.ok()
        .filter(dataset=data)
        .order_by("id")
        .only("relative_path", "sha256", "box", "dlib_landmarks", "aligned", "crop160")
    )
    if not images:
        raise EmbedError(f"dataset {data.name!r} has no aligned images: run import_faces first")
    return images


def _stored_inputs(data: FaceDataset, recognizer: str, weights: str) -> dict[int, tuple[str, str]]:
    """image id → (source SHA-256, preprocessing) of its Embedding for these weights."""
    return {
        image_id: (source, prep)
        for image_id, source, prep in Embedding.objects.filter(
            image__dataset=data, recognizer=recognizer, weights_sha256=weights
        ).values_list("image_id", "source_sha256", "preprocessing")
    }


def _inputs_load(
    images: list[FaceImage], load: Callable[[FaceImage], np.ndarray], summary: EmbedSummary
) -> tuple[list[FaceImage], list[np.ndarray]]:
    """The images whose input could be built, and those inputs; the others go to ``failed``."""
    batch, crops = [], []
    for image in images:
        try:
            crops.append(load(image))
        except (InputError, OSError) as exc:
            summary.failed.append((image.relative_path, str(exc)))
            continue
        batch.append(image)
    return batch, crops


def _embeddings_write(
    batch: list[FaceImage], vectors: np.ndarray, *, data: FaceDataset, summary: EmbedSummary
) -> None:
    """Insert or update one batch's Embedding rows in one transaction."""
    rows = [
        Embedding(
            image_id=image.id,
            recognizer=summary.recognizer,
            weights_sha256=summary.weights_sha256,
            preprocessing=summary.preprocessing,
            source_sha256=image.sha256,
            dataset_fingerprint=data.fingerprint,
            dim=vectors.shape[1],
            vector=np.ascontiguousarray(vector, dtype="<f4").tobytes(),
        )
        for image, vector in zip(batch, vectors, strict=True)
    ]
    with transaction.atomic():
        Embedding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["image", "recognizer", "weights_sha256"],
            update_fields=[
                "preprocessing",
                "source_sha256",
                "dataset_fingerprint",
                "dim",
                "vector",
            ],
        )


def dataset_embed(
    *,
    dataset: str,
    recognizer: str,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    weights: str | Path | None = None,
) -> EmbedSummary:
    """Embed a dataset's ok images with ``recognizer``; compute only new or changed inputs.

    ``weights``: the state-dict file of an ArcFace backbone (``arcface-r50``,
    ``arcface-effnet``); the registered recognizers take none.

    An image is (re)computed when it has no Embedding for the recognizer's current weights,
    or its stored one has another source SHA-256 or preprocessing. Each batch is written in
    one transaction. Images whose input cannot be built are listed in ``failed``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    if batch_size < 1:
        raise EmbedError("the batch size must be at least 1")
    data = _dataset_get(dataset)
    model, weights_sha256 = _recognizer_load(recognizer, device=device, weights=weights)
    spec = INPUTS.get(recognizer, DEFAULT_INPUT)
    summary = EmbedSummary(
        dataset=data.name,
        fingerprint=data.fingerprint,
        recognizer=recognizer,
        weights_sha256=weights_sha256,
        preprocessing=f"input: {spec.description} | {model.preprocessing}",
        device=device,
    )
    images = _ok_images(data)
    summary.images = len(images)
    stored = _stored_inputs(data, recognizer, summary.weights_sha256)
    todo = [i for i in images if stored.get(i.id) != (i.sha256, summary.preprocessing)]
    summary.unchanged = len(images) - len(todo)

    load = _input_loader(spec, data)
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc=f"{data.name}/{recognizer}")
    try:
        for start in range(0, len(todo), batch_size):
            batch, crops = _inputs_load(todo[start : start + batch_size], load, summary)
            bar.update(len(todo[start : start + batch_size]))
            if not batch:
                continue
            tick = time.perf_counter()
            vectors = model.embed(np.stack(crops), device=device, batch_size=batch_size)
            summary.embed_seconds += time.perf_counter() - tick
            _embeddings_write(batch, vectors, data=data, summary=summary)
            created = sum(1 for image in batch if image.id not in stored)
            summary.created += created
            summary.updated += len(batch) - created
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
