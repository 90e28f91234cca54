"""Recognizer throughput on CPU and a small LFW identification check.

Usage: ``FVR_FACE_DATA=/work/shared/data python -m benchmarks.recognizer_throughput``
(options: ``--recognizers``, ``--batch-size``, ``--identities``, ``--threads``).

Throughput: images/s of batched ``embed()`` on 8 batches of aligned crops already at the
model's size, best of 3 runs (the machine may be shared; the best run is the least disturbed).
Identification: LFW identities with exactly 10 photos (158 in the standard release); the
first file (sorted) of each is the gallery, the other 9 are probes; rank-1 / top-5 by cosine.

Alignment: ``reconstruction.faces.alignment`` (dlib HOG detector, 68-point landmarks, similarity
transform onto the 5-point ArcFace template). ``faceres`` and ``mobileface`` get the ArcFace
framing at their input size (the 112×112 template scaled about the origin, as for the 160
crop); ``dlib-resnet`` gets ``dlib.get_face_chip(size=150, padding=0.25)`` from dlib's 5-point
shape, the crop its network was trained on. Photos where no face is detected are counted and
aligned from landmarks found in a fixed central box (LFW photos are centred on the face).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reconstruction.faces import alignment
from reconstruction.faces.datasets import identity_photos
from reconstruction.recognizers.registry import RECOGNIZERS, get_recognizer

CENTRE_BOX = (70, 70, 180, 180)  # fallback face box in a 250×250 LFW photo


@dataclass(frozen=True)
class Photo:
    """One LFW photo with its identity and alignment."""

    identity: str
    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    matrix: np.ndarray  # (2, 3) source → 112×112 ArcFace template
    dlib_points: np.ndarray  # (5, 2) dlib 5-point shape
    box: tuple[int, int, int, int]


def lfw_identities(root: Path, count: int) -> dict[str, list[Path]]:
    """Identities with exactly ``count`` photos, sorted, with their sorted files."""
    return {name: files for name, files in identity_photos(root).items() if len(files) == count}


def align(paths: dict[str, list[Path]]) -> tuple[list[Photo], int]:
    """Load and align photos; return them and how many had no detection."""
    photos, missing = [], 0
    for identity, files in paths.items():
        for path in files:
            pixels = alignment.decode_rgb(path.read_bytes())
            face = alignment.align_face(pixels).face
            if face is not None:
                photos.append(
                    Photo(identity, pixels, face.matrix, face.dlib_points, face.detection.box)
                )
                continue
            missing += 1
            points = alignment.arcface_points(alignment.shape_points(pixels, CENTRE_BOX))
            matrix = alignment.similarity_transform(points, alignment.ARCFACE_TEMPLATE)
            dlib_points = alignment.shape_points(pixels, CENTRE_BOX, points=5)
            photos.append(Photo(identity, pixels, matrix, dlib_points, CENTRE_BOX))
    return photos, missing


def crops(photos: list[Photo], name: str, size: int) -> np.ndarray:
    """The crops recognizer ``name`` is fed: (N, size, size, 3) uint8 RGB."""
    if name == "dlib-resnet":
        if size != alignment.DLIB_CHIP_SIZE:
            raise ValueError(f"dlib-resnet takes {alignment.DLIB_CHIP_SIZE} px chips, not {size}")
        return np.stack([alignment.dlib_chip(p.pixels, p.box, p.dlib_points) for p in photos])
    scale = size / alignment.ALIGNED_SIZE
    return np.stack([alignment.warp(p.pixels, p.matrix * scale, size) for p in photos])


def throughput(name: str, images: np.ndarray, batch_size: int, repeats: int = 3) -> float:
    """Best images/s of batched embed() over ``repeats`` runs, after a warm-up batch."""
    recognizer = get_recognizer(name)
    recognizer.embed(images[:batch_size], batch_size=batch_size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        recognizer.embed(images, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def identification(embeddings: np.ndarray, labels: list[str], gallery: list[bool]) -> tuple:
    """Rank-1 and top-5 accuracy of probes against a one-image-per-identity gallery."""
    gallery_idx = [i for i, g in enumerate(gallery) if g]
    probe_idx = [i for i, g in enumerate(gallery) if not g]
    scores = embeddings[probe_idx] @ embeddings[gallery_idx].T  # (P, G) cosine
    ranked = np.argsort(-scores, axis=1)
    gallery_labels = np.array([labels[i] for i in gallery_idx])
    truth = np.array([labels[i] for i in probe_idx])
    hits = gallery_labels[ranked] == truth[:, None]
    return float(hits[:, 0].mean()), float(hits[:, :5].any(axis=1).mean()), len(probe_idx)


def main() -> None:
    """Print throughput and identification figures for each recognizer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recognizers", nargs="*", default=sorted(RECOGNIZERS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--identities", type=int, default=0, help="0: all with 10 photos")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = Path(os.environ.get("FVR_FACE_DATA", "")) / "lfw"
    if not data.is_dir():
        raise SystemExit("set FVR_FACE_DATA to the folder containing lfw/")
    paths = lfw_identities(data, 10)
    if args.identities:
        paths = dict(list(paths.items())[: args.identities])
    start = time.perf_counter()
    photos, missing = align(paths)
    print(
        f"{len(paths)} identities, {len(photos)} photos, {missing} without a HOG detection; "
        f"alignment {time.perf_counter() - start:.1f}s; torch threads {args.threads}"
    )
    labels = [p.identity for p in photos]
    gallery = [i % 10 == 0 for i in range(len(photos))]

    print(f"{'recognizer':<12} {'dim':>5} {'size':>5} {'img/s':>8} {'rank-1':>7} {'top-5':>7}")
    for name in args.recognizers:
        recognizer = get_recognizer(name)
        images = crops(photos, name, recognizer.input_size)
        speed = throughput(name, images[: 8 * args.batch_size], args.batch_size)
        embeddings = recognizer.embed(images, batch_size=args.batch_size)
        rank1, top5, probes = identification(embeddings, labels, gallery)
        print(
            f"{name:<12} {recognizer.embedding_dim:>5} {recognizer.input_size:>5} "
            f"{speed:>8.1f} {rank1:>7.3f} {top5:>7.3f}  ({probes} probes)"
        )


if __name__ == "__main__":
    main()
