"""Train each parametric FVR method at a reduced scale on CPU and measure it on held-out faces.

Usage: ``FVR_FACE_DATA=/work/shared/data python -m benchmarks.parametric_methods``
(options: ``--methods``, ``--train-faces``, ``--targets``, ``--threads``, ``--out``).

Data: LFW photos aligned by ``reconstruction.faces.alignment`` (112×112 ArcFace crops; 160×160 for
NBNet). Identities are split by a hash of their name: bucket 0 of 10 gives the held-out
targets (one photo each), the rest give the training faces (at most 3 photos per identity,
sorted names, first ``--train-faces``). F = ``mobileface``; a training face's vector is F of
that face. Aligned crops are cached in ``--out``.

Reduced scale (``BENCH_CONFIGS``), documented here and printed: narrower networks and far
fewer images than the paper (which trains on WebFace/VGGFace2/FaceScrub for 5–80 epochs or
15 M images). As in the tool's defaults the networks that train NBNet's perceptual loss and
Vec2Face's identity loss are not F (black-box): NBNet's is the second recognizer chosen for F
(faceres; no VGG-19 weights here), Vec2Face's a student of F (iresnet18 at 2 epochs, trained on
F's vectors of the training faces).

Figures: for each held-out target t and its reconstruction r_t, cos(F(r_t), v_t) ("own")
versus the mean of cos(F(r_t), v_u) over the other targets u ("other"); margin = own − other,
and rank-1 = share of r_t whose nearest target vector is v_t. One grid per method (targets
above, reconstructions below) is saved to ``--out`` (outside the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reconstruction.methods import naive, nbnet, parametric, vec2face

BENCH_CONFIGS = {
    # 80×80 output (four blocks), 1/8 of the widths, 8 epochs.
    "nbnet": nbnet.NbNetConfig(
        init_channels=32,
        block_layers=(4, 2, 2, 1),
        growth=4,
        batch_size=32,
        l1_epochs=6,
        perceptual_epochs=2,
    ),
    # 56×56 output (three stages), 1/4 of the widths, one block per stage, 8 epochs.
    "naive": naive.NaiveConfig(
        base_channels=128,
        stage_channels=(64, 32, 16),
        blocks_per_stage=1,
        batch_size=32,
        epochs=8,
    ),
    # 32×32 networks with 64 channels, resized to 56×56; 250 steps of 16.
    "vec2face": vec2face.Vec2FaceConfig(
        resolution=32,
        output_size=56,
        fmap_base=256,
        fmap_max=64,
        batch_size=16,
        total_images=16 * 250,
    ),
}


def _bucket(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 10


def load_faces(root: Path, out: Path, train_faces: int, targets: int) -> dict[str, np.ndarray]:
    """Aligned train/target crops (cached in ``out``)."""
    cache = out / f"lfw_aligned_{train_faces}_{targets}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    from reconstruction.faces.alignment import align_face, decode_rgb
    from reconstruction.faces.datasets import identity_photos

    photos = identity_photos(root)
    identities = sorted(photos)
    data: dict[str, np.ndarray] = {}
    for split, per, limit in (("test", 1, targets), ("train", 3, train_faces)):
        chosen = [i for i in identities if (_bucket(i) == 0) == (split == "test")]
        a112, a160 = [], []
        for ident in chosen:
            for path in photos[ident][:per]:
                face = align_face(decode_rgb(path.read_bytes())).face
                if face is not None:
                    a112.append(face.aligned)
                    a160.append(face.crop160)
            if len(a112) >= limit:
                break
        data[f"{split}112"] = np.stack(a112[:limit])
        data[f"{split}160"] = np.stack(a160[:limit])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def to_signed(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3)."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())


def save_grid(path: Path, targets: np.ndarray, recons: np.ndarray, columns: int = 8) -> None:
    """Targets in the top row, reconstructions below, at 112×112."""
    tiles = [
        np.asarray(Image.fromarray(img).resize((112, 112), Image.Resampling.BILINEAR))
        for img in (*targets[:columns], *recons[:columns])
    ]
    rows = [np.concatenate(tiles[:columns], 1), np.concatenate(tiles[columns:], 1)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="naive,nbnet,vec2face")
    parser.add_argument("--train-faces", type=int, default=1000)
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop each method early (schedule cut short)"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/fvr-bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(os.environ.get("FVR_FACE_DATA", "/work/shared/data")) / "lfw"
    from reconstruction.recognizers.registry import get_recognizer

    started = time.perf_counter()
    data = load_faces(root, args.out, args.train_faces, args.targets)
    recognizer = get_recognizer("mobileface")
    train_vectors = torch.from_numpy(recognizer.embed(data["train112"]))
    target_vectors = recognizer.embed(data["test112"])
    print(
        f"faces: {len(data['train112'])} training, {len(target_vectors)} held-out targets "
        f"(prepared in {time.perf_counter() - started:.0f} s); F = mobileface, "
        f"{torch.get_num_threads()} threads"
    )
    real = target_vectors @ target_vectors.T
    off = ~np.eye(len(real), dtype=bool)
    print(f"reference: real targets' mean cosine to other targets {real[off].mean():.3f}")

    for method in args.methods.split(","):
        config = BENCH_CONFIGS[method]
        module = parametric.MODULES[method]
        size = 160 if method == "nbnet" else 112  # methods resize to their output size
        images = to_signed(data[f"train{size}"])
        kwargs: dict[str, object] = {}
        if method == "nbnet":
            kwargs["recognizer"] = "mobileface"  # F: picks a perceptual network other than F
        if method == "vec2face":
            kwargs["identity"] = vec2face.identity_network(
                "mobileface",
                images=images,
                targets=train_vectors,
                student_config=vec2face.StudentConfig(epochs=2),
                seed=args.seed,
            )
        result = module.train(
            config,
            train_vectors,
            images,
            seed=args.seed,
            device="cpu",
            checkpoint_dir=args.out / f"ckpt-{method}",
            progress=False,
            max_steps=args.max_steps,
            **kwargs,
        )
        recon = module.reconstruct(result.model, torch.from_numpy(target_vectors))
        pixels = to_uint8(recon)
        cos = recognizer.embed(pixels) @ target_vectors.T  # (targets, targets)
        own = float(np.diag(cos).mean())
        other = float(cos[off].mean())
        rank1 = float((cos.argmax(axis=1) == np.arange(len(cos))).mean())
        grid = args.out / f"{method}_grid.png"
        save_grid(grid, data["test112"], pixels)
        params = sum(p.numel() for p in result.model.parameters())
        last = {k: round(v, 4) for k, v in result.history[-1].items()}
        print(
            f"\n{method}: {params / 1e6:.2f} M params, {result.steps} of {result.total_steps} "
            f"steps (resumed at {result.start_step}), {result.wall_s:.0f} s training"
        )
        print(f"  config: {asdict(config)}")
        print(f"  last losses: {last}")
        print(
            f"  cosine own {own:.3f}  other {other:.3f}  margin {own - other:+.3f}  "
            f"rank-1 among {len(cos)} targets {rank1:.2f} (chance {1 / len(cos):.2f})"
        )
        print(f"  grid: {grid}")


if __name__ == "__main__":
    main()
