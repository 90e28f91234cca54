"""Eigenfaces attack on real LFW faces: cosine in F, speed, and top-5 identification.

Usage (CPU, F = mobileface, the issue's acceptance run; 2–6 min per target on 2 cores):
``FVR_FACE_DATA=/work/shared/data python -m benchmarks.eigenfaces_attack --targets 20``
Smaller: ``--targets 3 --iterations 300``. GPU: ``--recognizer faceres --device cuda``.

- Basis (Dec and mean face): LFW identities with 2–3 photos (``--basis-identities`` caps
  how many), aligned with ``reconstruction.faces.alignment`` (dlib, ArcFace template, 112×112);
  PCA by default (``--basis-method``), fitted by ``reconstruction.methods.eigenbasis``.
- Targets: the first ``--targets`` identities (by name) with 10 photos; the source is each
  one's first photo and its vector is F(aligned source). Never used for the basis.
- Gallery: N = ``--gallery`` identities: every 10-photo identity, then 1-photo identities by
  name. Each enrols all its photos except a target's source photo (Metric 1's protocol,
  ``reconstruction.metric1.scoring``: the true identity always enrolled, the source excluded).
  Top-5: share of reconstructions whose 5 nearest gallery images (cosine, exact search with
  ``reconstruction.metric1.gallery.Gallery``) include an image of the true identity, in
  F' = F and in
  F' = dlib-resnet. Chance: 5 / N. A stricter variant enrols one photo per identity (the
  second photo of a 10-photo identity), ``top5_*_one_photo``. dlib's ResNet
  sees each face in its own framing: gallery and source photos as ``get_face_chip`` crops, a
  reconstruction (ArcFace frame) through ``reconstruction.recognizers.registry.reconstruction_view``
  (the chip cut with the fixed mean dlib shape), as in Metric 1 and build_study.

Aligned crops are cached under ``--cache`` (default /tmp/fvr_eigenfaces_bench): they are
derived from real photos, so keep them outside the repository. ``--save-images DIR`` writes
the reconstructions (also outside the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reconstruction.faces import alignment
from reconstruction.faces.datasets import identity_photos
from reconstruction.methods.eigenbasis import EigenBasis, EigenBasisConfig, fit_eigenbasis
from reconstruction.methods.eigenfaces import EigenfacesConfig, reconstruct
from reconstruction.metric1.gallery import Gallery
from reconstruction.recognizers.registry import get_recognizer, reconstruction_embed


def lfw_identities(root: Path) -> dict[str, list[Path]]:
    """Identity name → its sorted photos."""
    return identity_photos(root)


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
    from tqdm import tqdm

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
        faces.chips[i] = alignment.dlib_chip(pixels, face.detection.box, face.dlib_points)
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


def top5(queries: np.ndarray, gallery: Gallery, truth: list[int], k: int = 5) -> float:
    """Share of queries whose k nearest gallery images (cosine) include one of the truth's."""
    return float(gallery.search(queries, k=k, by="image").hits(truth).any(axis=1).mean())


def cached_embed(engine: Any, images: np.ndarray, device: str, cache: Path) -> np.ndarray:
    """``engine.embed(images)``, kept under ``cache`` by the engine's name and the pixels."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
    file = cache / f"vectors-{engine.name}-{digest}.npy"
    if file.exists():
        return np.load(file)
    vectors = engine.embed(images, device=device)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, vectors)
    return vectors


BUNDLE_FORMAT = "fvr-eigenfaces-bundle/1"


def fit_or_load_basis(faces: np.ndarray, n_identities: int, args: argparse.Namespace) -> EigenBasis:
    """The eigenbasis: ``--basis-file`` if it exists, else fitted on ``faces`` (and saved)."""
    if args.basis_file and args.basis_file.exists():
        basis = EigenBasis.load(args.basis_file)
        print(f"basis: {args.basis_file} ({basis.meta.get('n_images')} images)")
        return basis
    start = time.perf_counter()
    config = EigenBasisConfig(
        method=args.basis_method, epochs=args.basis_epochs, sigma_power=args.basis_sigma_power
    )
    basis = fit_eigenbasis(faces, config=config, seed=args.seed, device=args.device)
    print(
        f"basis: {args.basis_method} on {len(faces)} faces of {n_identities} identities, "
        f"{basis.data_components} data components, {time.perf_counter() - start:.1f} s"
    )
    if args.basis_file:
        args.basis_file.parent.mkdir(parents=True, exist_ok=True)
        args.basis_file.write_bytes(basis.to_bytes())
        basis = EigenBasis.load(args.basis_file)
    return basis


def attack(
    names: list[str], sources: np.ndarray, basis: EigenBasis, args: argparse.Namespace
) -> tuple[list[dict[str, object]], list[np.ndarray]]:
    """Reconstruct each target from F(aligned source); one row of figures per target.

    With ``--time-budget`` no target is started once that many seconds have passed since the
    first one began (the rows say how many were done).
    """
    recognizer = get_recognizer(args.recognizer)
    config = EigenfacesConfig.budget(args.iterations)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # one input shape throughout: pick the fastest
    print(f"F = {args.recognizer} on {args.device}; {config}")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {device_name}, torch threads: {torch.get_num_threads()}", flush=True)
    rows: list[dict[str, object]] = []
    images: list[np.ndarray] = []
    began = time.perf_counter()
    for name, face in zip(names, sources, strict=True):
        if args.time_budget and time.perf_counter() - began > args.time_budget:
            print(f"time budget of {args.time_budget:.0f} s spent: {len(rows)} targets done")
            break
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
    return rows, images


def summarise(rows: list[dict[str, object]], args: argparse.Namespace, device: str) -> dict:
    """The attack's figures over targets."""
    config = EigenfacesConfig.budget(args.iterations)
    return {
        "recognizer": args.recognizer,
        "device": device,
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
    }


def _pack_lossless(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 faces (N, S, S, 3) → (WebP-lossless bytes concatenated, end offsets (N,)).

    Lossless WebP is less than half the size of zlib on the raw pixels (31 against 78 MiB
    for LFW's 2425 basis faces), which is what lets a bundle travel to a rented GPU host.
    """
    import io

    from PIL import Image

    blobs = []
    for face in faces:
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, "WEBP", lossless=True, quality=100, method=2)
        blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
    return np.concatenate(blobs), np.cumsum([len(b) for b in blobs])


def _unpack_lossless(blob: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_pack_lossless`."""
    import io

    from PIL import Image

    starts = np.concatenate([[0], ends[:-1]])
    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
            for a, b in zip(starts, ends, strict=True)
        ]
    )


def write_bundle(
    folder: Path, basis_faces: Faces, n_basis_identities: int, names: list[str], sources: Faces
) -> None:
    """What a GPU host needs to run the attack without LFW or dlib: the aligned basis faces
    and the targets' aligned source crops, losslessly compressed (checked on the way)."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "bundle.npz"
    basis_blob, basis_ends = _pack_lossless(basis_faces.aligned)
    if not np.array_equal(_unpack_lossless(basis_blob, basis_ends), basis_faces.aligned):
        raise RuntimeError("lossless WebP did not round-trip the basis faces")
    target_blob, target_ends = _pack_lossless(sources.aligned)
    np.savez(
        file,
        format=np.array(BUNDLE_FORMAT),
        basis_blob=basis_blob,
        basis_ends=basis_ends,
        basis_identities=np.array(n_basis_identities),
        target_names=np.array(names),
        target_blob=target_blob,
        target_ends=target_ends,
        target_found=sources.found,
    )
    print(f"bundle: {file} ({file.stat().st_size / 2**20:.1f} MiB)")


def run_bundle(args: argparse.Namespace) -> int:
    """The GPU half: reconstruct from a bundle; save images and figures for ``--score``."""
    data = np.load(args.bundle / "bundle.npz")
    if str(data["format"]) != BUNDLE_FORMAT:
        print(f"{args.bundle}: not a {BUNDLE_FORMAT} bundle", file=sys.stderr)
        return 2
    basis_faces = _unpack_lossless(data["basis_blob"], data["basis_ends"])
    basis = fit_or_load_basis(basis_faces, int(data["basis_identities"]), args)
    found = data["target_found"]
    names = [str(n) for n, ok in zip(data["target_names"], found, strict=True) if ok]
    sources = _unpack_lossless(data["target_blob"], data["target_ends"])[found]
    names, sources = names[: args.targets], sources[: args.targets]
    rows, images = attack(names, sources, basis, args)
    if not rows:
        return 1
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    summary = summarise(rows, args, device)
    print(json.dumps(summary, indent=2))
    out = args.reconstructions or Path("reconstructions.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=np.stack(images),
        rows=np.array(json.dumps({"summary": summary, "targets": rows})),
    )
    print(f"reconstructions: {out}; score them where LFW is with --score {out.name}")
    return 0


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
    parser.add_argument(
        "--basis-sigma-power",
        type=float,
        default=EigenBasisConfig.sigma_power,
        help="PCA: scale direction i by σ_i to this power (1 Gaussian, 0 flat)",
    )
    parser.add_argument("--basis-file", type=Path, default=None, help="reuse a fitted basis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fvr_eigenfaces_bench"))
    parser.add_argument("--save-images", type=Path, default=None)
    parser.add_argument("--progress", action="store_true", help="a progress bar per target")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; see attack()")
    split = parser.add_argument_group(
        "split runs",
        "attack on a host without LFW or dlib (a rented GPU), score where the photos are",
    )
    split.add_argument(
        "--write-bundle",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the aligned basis faces and target crops to DIR and stop",
    )
    split.add_argument(
        "--bundle",
        type=Path,
        default=None,
        metavar="DIR",
        help="reconstruct from DIR/bundle.npz; needs only torch and F",
    )
    split.add_argument(
        "--reconstructions",
        type=Path,
        default=None,
        metavar="FILE",
        help="where --bundle writes its images (default reconstructions.npz)",
    )
    split.add_argument(
        "--score",
        type=Path,
        default=None,
        metavar="FILE",
        help="score the reconstructions a --bundle run wrote, against LFW",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bundle:
        return run_bundle(args)
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
    sources = aligned_faces([identities[n][0] for n in targets], args.cache, "targets")
    if args.write_bundle:
        write_bundle(args.write_bundle, basis_faces, len(basis_names), targets, sources)
        return 0

    if args.score:
        saved = np.load(args.score)
        figures = json.loads(str(saved["rows"]))
        rows, recon = figures["targets"], saved["images"]
        summary = figures["summary"]
        args.recognizer = summary["recognizer"]
        print(f"scoring {len(rows)} reconstructions by {args.recognizer} ({summary['device']})")
    else:
        basis = fit_or_load_basis(basis_faces.aligned, len(basis_names), args)
        found = [n for n, ok in zip(targets, sources.found, strict=True) if ok]
        for name in sorted(set(targets) - set(found)):
            print(f"{name}: no face found in the source photo, skipped")
        rows, images = attack(found, sources.ok().aligned, basis, args)
        if not rows:
            return 1
        recon = np.stack(images)
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
        summary = summarise(rows, args, device)

    # Gallery: every 10-photo identity, then 1-photo identities; all photos but the sources.
    gallery_names = (ten + single)[: args.gallery]
    sources_set = {identities[n][0] for n in targets}
    enrolled = [(i, p) for i, n in enumerate(gallery_names) for p in identities[n]]
    enrolled = [(i, p) for i, p in enrolled if p not in sources_set]
    gallery = aligned_faces([p for _, p in enrolled], args.cache, "gallery-all")
    labels = np.array([i for i, _ in enrolled])[gallery.found]
    paths = [p for (_, p), ok in zip(enrolled, gallery.found, strict=True) if ok]
    gallery = gallery.ok()
    # The one-photo variant: a 10-photo identity's second photo, a 1-photo identity's photo.
    one_photo_of = [identities[n][1 if len(identities[n]) >= 10 else 0] for n in gallery_names]
    one_photo = np.array([p == one_photo_of[i] for i, p in zip(labels, paths, strict=True)])
    attacked = [r["identity"] for r in rows]
    originals_of = sources.ok()
    source_names = [n for n, ok in zip(targets, sources.found, strict=True) if ok]
    picked = [source_names.index(n) for n in attacked]
    truth = [gallery_names.index(n) for n in attacked]
    summary["gallery_identities"] = len(set(labels.tolist()))
    summary["gallery_images"] = len(labels)
    # Scoring runs where the photos are (here: the CPU), whatever device the attack used.
    device = "cpu" if args.score else args.device
    for second in dict.fromkeys([args.recognizer, args.second]):
        engine = get_recognizer(second)
        start = time.perf_counter()
        if second == "dlib-resnet":
            # dlib's own framing: chips of the photos, the mean-shape chip of a reconstruction.
            gallery_vectors = cached_embed(engine, gallery.chips, device, args.cache)
            queries = reconstruction_embed(second, recon, device=device)
            originals = engine.embed(originals_of.chips[picked], device=device)
        else:
            gallery_vectors = cached_embed(engine, gallery.aligned, device, args.cache)
            queries = reconstruction_embed(second, recon, device=device)
            originals = engine.embed(originals_of.aligned[picked], device=device)
        galleries = {
            "": Gallery(gallery_vectors, labels=labels, backend="torch"),
            "_one_photo": Gallery(
                gallery_vectors[one_photo], labels=labels[one_photo], backend="torch"
            ),
        }
        for suffix, enrolled_gallery in galleries.items():
            key = f"top5_{second}{suffix}"
            summary[key] = top5(queries, enrolled_gallery, truth)
            summary[f"{key}_real_source"] = top5(originals, enrolled_gallery, truth)
            print(
                f"top-5 in {second} among N = {summary['gallery_identities']} identities, "
                f"{len(enrolled_gallery)} images{suffix.replace('_', ' ')}: reconstructions "
                f"{summary[key]:.2f}, the real source photos "
                f"{summary[f'{key}_real_source']:.2f} ({time.perf_counter() - start:.0f} s)"
            )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "targets": rows}, indent=2))
    return 0


if __name__ == "__main__":
    if "--bundle" not in sys.argv:  # a bundle run needs no Django (nor the project's deps)
        import django

        # With DEBUG off the settings refuse to start without keys: random ones for this run.
        for name in ("DJANGO_SECRET_KEY", "FVR_PSEUDONYM_KEY"):
            os.environ.setdefault(name, secrets.token_urlsafe(50))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    sys.exit(main())
