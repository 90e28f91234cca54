"""Naive (Guo et al., as re-created by Wenger et al. 2022): a pixel-loss up-sampling ResNet.

Defaults: the study's settings (§ IV: "stacked, inverted ResNet blocks", 5 epochs, batch
128, pixel loss) and the layout in ``networks/naive.py``. The study does not give the
optimiser or which pixel norm; chosen here: Adam lr 1e-3 (β 0.9, 0.999) and mean squared
error (``pixel_loss="l1"`` switches to mean absolute error). No pretrained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.networks.naive import NaiveDecoder
from reconstruction.training import (
    DeviceLike,
    TrainResult,
    batch_indices,
    config_dict,
    config_from_dict,
    generate_images,
    load_model_file,
    prepare_images,
    prepare_vectors,
    resolve_device,
    run_training,
    save_model_file,
    total_steps_for,
)

__all__ = ["NaiveConfig", "build", "load_model", "reconstruct", "save_model", "train"]

METHOD = "naive"


@dataclass(frozen=True)
class NaiveConfig:
    """The naive decoder and its training; defaults are the study's (or noted choices)."""

    base_channels: int = 512
    base_size: int = 7
    stage_channels: tuple[int, ...] = (256, 128, 64, 32)
    blocks_per_stage: int = 2
    batch_size: int = 128
    epochs: float = 5
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    pixel_loss: str = "mse"  # or "l1"

    @property
    def image_size(self) -> int:
        """Output side: 7 · 2^stages (112)."""
        return self.base_size * 2 ** len(self.stage_channels)

    @classmethod
    def tiny(cls) -> NaiveConfig:
        """Small widths, 14×14 output, a few steps: a CPU test in about a second."""
        return cls(
            base_channels=16, stage_channels=(8,), blocks_per_stage=1, batch_size=4, epochs=3
        )

    @classmethod
    def cpu(cls) -> NaiveConfig:
        """Reduced scale for a CPU run on LFW: 56×56 output (stored resized to 112), ~1 M
        parameters, about 3 s per batch of 32 on 2 cores."""
        return cls(
            base_channels=128, stage_channels=(64, 32, 16), blocks_per_stage=1, batch_size=32
        )

    def __post_init__(self) -> None:
        if self.pixel_loss not in ("mse", "l1"):
            raise ValueError(f"pixel_loss must be 'mse' or 'l1', not {self.pixel_loss!r}")


def build(config: NaiveConfig, vector_dim: int) -> NaiveDecoder:
    """An untrained decoder for ``vector_dim``-D vectors."""
    return NaiveDecoder(
        vector_dim,
        base_channels=config.base_channels,
        stage_channels=config.stage_channels,
        blocks_per_stage=config.blocks_per_stage,
        base_size=config.base_size,
    )


def train(
    config: NaiveConfig,
    vectors: Tensor,
    images: Tensor,
    *,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Train on (N, D) vectors and their (N, 3, H, W) images in [-1, 1] (resized to 112)."""
    device = resolve_device(device)
    vectors = prepare_vectors(vectors)
    images = prepare_images(images, config.image_size)
    if len(vectors) != len(images):
        raise ValueError(f"{len(vectors)} vectors but {len(images)} images")
    n, dim = vectors.shape
    torch.manual_seed(seed)
    model = build(config, dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    pixel = F.mse_loss if config.pixel_loss == "mse" else F.l1_loss

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, config.batch_size, seed, step)
        fake = model(vectors[idx].to(device))  # (B, 3, 112, 112)
        loss = pixel(fake, images[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {config.pixel_loss: loss.item()}

    total = total_steps_for(config.epochs, n, config.batch_size)
    meta = {"method": METHOD, "config": config_dict(config), "seed": seed, "data": [n, dim]}
    run = run_training(
        modules={"model": model},
        optimizers={"model": optimizer},
        schedulers={},
        step_fn=step_fn,
        total_steps=total,
        seed=seed,
        run_meta=meta,
        checkpoint_dir=checkpoint_dir,
        max_steps=max_steps,
        progress=progress,
        description=METHOD,
    )
    return TrainResult.of(
        run,
        model=model,
        method=METHOD,
        config=config,
        seed=seed,
        device=device,
        total_steps=total,
    )


def reconstruct(model: nn.Module, vectors: Tensor, *, batch_size: int = 64) -> Tensor:
    """(N, D) vectors -> (N, 3, 112, 112) images in [-1, 1] (CPU tensor)."""
    return generate_images(model, vectors, batch_size=batch_size)


def save_model(path: str | Path, result: TrainResult) -> Path:
    """Save a trained decoder with its config (see ``load_model``)."""
    dim = result.model.fc.in_features
    return save_model_file(
        path,
        method=METHOD,
        config=result.config,
        vector_dim=dim,
        model=result.model,
        seed=result.seed,
        steps=result.steps,
    )


def load_model(path: str | Path, device: DeviceLike = "cpu") -> NaiveDecoder:
    """A trained decoder from ``save_model``'s file, in eval mode on ``device``."""
    payload = load_model_file(path, METHOD)
    config = replace(NaiveConfig(), **config_from_dict(payload["config"]))
    model = build(config, payload["vector_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
