"""Eigenfaces attack on real LFW faces: cosine in F, speed, and top-5 identification.

Usage (CPU, F = mobileface, the issue's acceptance run; ≈ 2 min per target here):
``FVR_FACE_DATA=/work/shared/data python -m benchmarks.eigenfaces_attack --targets 20``
Smaller: ``--targets 3 --iterations 300``. GPU: ``--recognizer faceres --device cuda``.

- Basis (Dec and mean face): LFW identities with 2–3 photos (``--basis-identities`` caps
  how many), aligned with ``reconstruction.alignment`` (dlib, ArcFace template, 112×112);
  PCA by default (``--basis-method``), fitted by ``reconstruction.eigenbasis``.
- Targets: the first ``--targets`` identities (by name) with 10 photos; the source is each
  one's first photo and its vector is F(aligned source). Never used for the basis.
- Gallery: N = ``--gallery`` identities, one enrolled photo each: every 10-photo identity with
  its second photo (so a target's source photo is excluded), then 1-photo identities by name.
  Top-5: share of reconstructions whose 5 nearest gallery vectors (cosine, exact numpy search)
  include the true identity, in F' = F and in F' = dlib-resnet. Chance: 5 / N. dlib's ResNet
  sees each face in its own framing: gallery and source photos as ``get_face_chip`` crops, a
  reconstruction (ArcFace frame) as the chip cut with the basis faces' mean dlib shape.

Aligned crops are cached under ``--cache`` (default /tmp/fvr_eigenfaces_bench): they are
derived from real photos, so keep them outside the repository. ``--save-images DIR`` writes
the reconstructions (also outside the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reconstruction import alignment
from reconstruction.eigenbasis import EigenBasis, EigenBasisConfig, fit_eigenbasis
from reconstruction.methods.eigenfaces import EigenfacesConfig, reconstruct
from reconstruction.recognizers import get_recognizer


def lfw_identities(root: Path) -> dict[str, list[Path]]:
    """Identity name → its sorted photos."""
    return {
        folder.name: sorted(folder.glob("*.jpg"))
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
    }


@dataclass
class Faces:
    """Aligned crops of photos, with what dlib's ResNet needs to see the same faces."""

    aligned: np.ndarray  # (N, 112, 112, 3) uint8, zeros where no face was found
    chips: np.ndarray  # (N, 150, 150, 3) uint8 dlib get_face_chip crops of the photos
    dlib_in_arcface: np.ndarray  # (N, 5, 2) dlib 5-point shape in the 112×112 ArcFace frame
    found: np.ndarray  # (N,) bool

    def ok(self) -> Faces:
        return Faces(
            self.aligned[self.found],
            self.chips[self.found],
            self.dlib_in_arcface[self.found],
            self.found[self.found],
        )


def aligned_faces(paths: list[Path], cache: Path, tag: str) -> Faces:
    """Aligned 112×112 crops and dlib chips of ``paths``, cached by the path list."""
    digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]
    file = cache / f"{tag}-v2-{digest}.npz"
    if file.exists():
        data = np.load(file)
        return Faces(data["aligned"], data["chips"], data["dlib_in_arcface"], data["found"])
    import dlib
    from tqdm import tqdm

    from reconstruction.embedding import DLIB_CHIP_PADDING

    size = alignment.ALIGNED_SIZE
    faces = Faces(
        np.zeros((len(paths), size, size, 3), np.uint8),
        np.zeros((len(paths), 150, 150, 3), np.uint8),
        np.zeros((len(paths), 5, 2)),
        np.zeros(len(paths), bool),
    )
    for i, path in enumerate(tqdm(paths, desc=f"align {tag}", unit="img")):
        pixels = alignment.decode_rgb(path.read_bytes())
        face = alignment.align_face(pixels).face
        if face is None:
            continue
        faces.found[i] = True
        faces.aligned[i] = face.aligned
        parts = [dlib.point(round(x), round(y)) for x, y in face.dlib_points]
        shape = dlib.full_object_detection(dlib.rectangle(*face.detection.box), parts)
        faces.chips[i] = dlib.get_face_chip(pixels, shape, size=150, padding=DLIB_CHIP_PADDING)
        faces.dlib_in_arcface[i] = alignment.apply_transform(face.matrix, face.dlib_points)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        file,
        aligned=faces.aligned,
        chips=faces.chips,
        dlib_in_arcface=faces.dlib_in_arcface,
        found=faces.found,
    )
    return faces


def top5(queries: np.ndarray, gallery: np.ndarray, truth: list[int], k: int = 5) -> float:
    """Share of queries whose k nearest gallery rows (cosine) include the true row."""
    scores = queries @ gallery.T  # (Q, N), rows are L2-normalised
    nearest = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(truth, nearest, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="FVR_FACE_DATA (holds lfw/)")
    parser.add_argument("--recognizer", default="mobileface")
    parser.add_argument("--second", default="dlib-resnet", help="F' besides F itself")
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=1000)
    parser.add_argument("--basis-identities", type=int, default=None)
    parser.add_argument("--basis-method", default="pca", choices=["pca", "autoencoder"])
    parser.add_argument("--basis-epochs", type=int, default=5)
    parser.add_argument("--basis-file", type=Path, default=None, help="reuse a fitted basis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fvr_eigenfaces_bench"))
    parser.add_argument("--save-images", type=Path, default=None)
    parser.add_argument("--progress", action="store_true", help="a progress bar per target")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or Path(os.environ.get("FVR_FACE_DATA", ""))
    if not (data / "lfw").is_dir():
        print("set FVR_FACE_DATA (or --data) to a folder holding lfw/", file=sys.stderr)
        return 2
    identities = lfw_identities(data / "lfw")
    ten = [name for name, files in identities.items() if len(files) >= 10]
    few = [name for name, files in identities.items() if 2 <= len(files) <= 3]
    single = [name for name, files in identities.items() if len(files) == 1]
    targets = ten[: args.targets]

    # Basis on identities disjoint from every target and gallery identity.
    basis_names = few[: args.basis_identities]
    basis_faces = aligned_faces(
        [p for name in basis_names for p in identities[name]], args.cache, "basis"
    ).ok()
    # dlib's ResNet sees a reconstruction (ArcFace frame) through the mean dlib shape of the
    # basis faces in that frame, as reconstruction.study_builder.query_vectors does.
    dlib_shape = basis_faces.dlib_in_arcface.mean(axis=0)
    if args.basis_file and args.basis_file.exists():
        basis = EigenBasis.load(args.basis_file)
        print(f"basis: {args.basis_file} ({basis.meta.get('n_images')} images)")
    else:
        faces = basis_faces.aligned
        start = time.perf_counter()
        config = EigenBasisConfig(method=args.basis_method, epochs=args.basis_epochs)
        basis = fit_eigenbasis(faces, config=config, seed=args.seed)
        print(
            f"basis: {args.basis_method} on {len(faces)} faces of {len(basis_names)} identities, "
            f"{basis.data_components} data components, {time.perf_counter() - start:.1f} s"
        )
        if args.basis_file:
            args.basis_file.parent.mkdir(parents=True, exist_ok=True)
            args.basis_file.write_bytes(basis.to_bytes())
            basis = EigenBasis.load(args.basis_file)

    # Gallery: every 10-photo identity by its second photo, then 1-photo identities.
    gallery_names = (ten + single)[: args.gallery]
    gallery_paths = [identities[n][1 if n in ten else 0] for n in gallery_names]
    gallery = aligned_faces(gallery_paths, args.cache, "gallery")
    gallery_names = [n for n, ok in zip(gallery_names, gallery.found, strict=True) if ok]
    gallery = gallery.ok()
    sources = aligned_faces([identities[n][0] for n in targets], args.cache, "targets")

    recognizer = get_recognizer(args.recognizer)
    config = EigenfacesConfig.budget(args.iterations)
    print(f"F = {args.recognizer} on {args.device}; {config}")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {device_name}, torch threads: {torch.get_num_threads()}")
    rows = []
    images = []
    for name, face, ok in zip(targets, sources.aligned, sources.found, strict=True):
        if not ok:
            print(f"{name}: no face found in the source photo, skipped")
            continue
        target = recognizer.embed(face[None], device=args.device)[0]
        result = reconstruct(
            target=target,
            recognizer=recognizer,
            artifact=basis,
            config=config,
            seed=args.seed,
            device=args.device,
            progress=args.progress,
        )
        images.append(result.image)
        rows.append(
            {
                "identity": name,
                "cosine": result.cosine,
                "seconds": result.seconds,
                "forward_share": result.forward_share,
                "queries": result.queries,
                "queries_per_s": result.queries / result.forward_seconds,
            }
        )
        r = rows[-1]
        print(
            f"{name:28s} cos {r['cosine']:.4f}  {r['seconds']:6.1f} s  "
            f"F-forward {r['forward_share']:.0%}  {r['queries']} queries  "
            f"{r['queries_per_s']:.0f} F queries/s (forward only)",
            flush=True,
        )
        if args.save_images:
            from PIL import Image

            args.save_images.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result.image).save(args.save_images / f"{name}.png")

    if not rows:
        return 1
    recon = np.stack(images)
    truth = [gallery_names.index(r["identity"]) for r in rows]
    summary = {
        "recognizer": args.recognizer,
        "device": device_name,
        "targets": len(rows),
        "iterations": config.iterations,
        "batch_size": config.batch_size,
        "mean_cosine": float(np.mean([r["cosine"] for r in rows])),
        "min_cosine": float(np.min([r["cosine"] for r in rows])),
        "seconds_per_target": float(np.mean([r["seconds"] for r in rows])),
        "forward_share": float(np.mean([r["forward_share"] for r in rows])),
        "queries_per_s_overall": float(
            sum(r["queries"] for r in rows) / sum(r["seconds"] for r in rows)
        ),
        "gallery_identities": len(gallery_names),
    }
    from reconstruction.study_builder import dlib_chips_in_arcface_frame  # needs django.setup()

    for second in dict.fromkeys([args.recognizer, args.second]):
        engine = get_recognizer(second)
        start = time.perf_counter()
        if second == "dlib-resnet":
            # dlib's own framing: chips of the photos, the mean-shape chip of a reconstruction.
            gallery_vectors = engine.embed(gallery.chips, device=args.device)
            queries = engine.embed(dlib_chips_in_arcface_frame(recon, dlib_shape))
            originals = engine.embed(sources.ok().chips, device=args.device)
        else:
            gallery_vectors = engine.embed(gallery.aligned, device=args.device)
            queries = engine.embed(recon, device=args.device)
            originals = engine.embed(sources.ok().aligned, device=args.device)
        summary[f"top5_{second}"] = top5(queries, gallery_vectors, truth)
        summary[f"top5_{second}_real_source"] = top5(originals, gallery_vectors, truth)
        print(
            f"top-5 in {second} among N = {len(gallery_names)}: reconstructions "
            f"{summary[f'top5_{second}']:.2f}, the real source photos "
            f"{summary[f'top5_{second}_real_source']:.2f} ({time.perf_counter() - start:.0f} s)"
        )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "targets": rows}, indent=2))
    return 0


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    sys.exit(main())
