"""NBNet (Mai et al., TPAMI 2019): train NbNet-B to map F's vectors to 160×160 faces.

Defaults are the study's settings (Wenger et al. 2022, § IV: NbNet-B, 80 epochs, batch 64,
"pixel mean-absolute-error loss for 60 epochs and add perceptual loss for the last 20") and
the authors' code (https://github.com/csgcmai/NBNet ``src/of2img_dcnn_mae.py`` and
``of2img_dcnn_percept.py``): Adam lr 2e-4, β1 0.5, no weight decay, learning rate ×0.94 every
5000 iterations, N(0, 0.02) initialisation, perceptual layer VGG-19 relu3_2 with a squared-
error loss on its features.

Perceptual phase, the reading implemented: by default the perceptual loss **replaces** L1
for the last 20 epochs, as the original code does (``of2img_dcnn_percept.py`` back-propagates
only the feature difference, starting from the L1-trained model); ``perceptual_mode="add"``
gives the paper text's reading (L1 + perceptual). The optimiser and its schedule continue
across the phase change.

Perceptual network: VGG-19 weights cannot be downloaded here. With ``vgg19_weights`` (a
torchvision-style VGG-19 state dict) the original relu3_2 loss is used. Otherwise the loss is
computed in a registered differentiable recognizer (``perceptual_recognizer``, default
``mobileface``: its TF.js graph run in torch via ``recognizers.get_recognizer(name).network``)
as 1 − cos between the embeddings of the reconstruction and of the real image — an identity
feature loss instead of a texture one. The choice is recorded as the model's
``perceptual_source`` and in the file written by ``save_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.training import (
    DeviceLike,
    SignedRangeEmbedder,
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
from reconstruction.networks.nbnet import NbNet, VGG19Features

__all__ = ["NbNetConfig", "build", "load_model", "reconstruct", "save_model", "train"]

METHOD = "nbnet"


@dataclass(frozen=True)
class NbNetConfig:
    """NbNet-B and its training schedule; defaults are the paper's / original code's."""

    init_channels: int = 256
    block_layers: tuple[int, ...] = (32, 16, 8, 4, 2)
    final_block_layers: int = 1
    growth: int = 8
    connectivity: str = "nbnetb"  # or "dense" (every layer sees all earlier outputs)
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: float = 0.94
    lr_decay_every: int = 5000  # iterations
    l1_epochs: float = 60
    perceptual_epochs: float = 20
    perceptual_mode: str = "replace"  # "replace" (original code) or "add" (paper text)
    perceptual_weight: float = 1.0
    perceptual_layer: str = "relu3_2"
    vgg19_weights: str = ""  # path to a VGG-19 state dict; empty: use the recognizer
    perceptual_recognizer: str = "mobileface"

    @property
    def image_size(self) -> int:
        """Output side: 5 · 2^blocks (160 for NbNet-B)."""
        return 5 * 2 ** len(self.block_layers)

    @classmethod
    def tiny(cls) -> NbNetConfig:
        """Small widths and a handful of steps: a CPU test in about a second (20×20 output)."""
        return cls(
            init_channels=16,
            block_layers=(2, 1),
            growth=4,
            batch_size=4,
            l1_epochs=2,
            perceptual_epochs=1,
        )

    @classmethod
    def cpu(cls) -> NbNetConfig:
        """Reduced scale for a CPU run on LFW: four blocks (80×80 output, stored resized to
        112), 64 initial channels, 6 + 2 epochs; about 1.5 s per L1 batch of 32 on 2 cores."""
        return cls(
            init_channels=64,
            block_layers=(4, 4, 2, 2),
            batch_size=32,
            l1_epochs=6,
            perceptual_epochs=2,
        )

    def __post_init__(self) -> None:
        if self.perceptual_mode not in ("replace", "add"):
            raise ValueError(f"perceptual_mode must be 'replace' or 'add': {self.perceptual_mode}")


def build(config: NbNetConfig, vector_dim: int) -> NbNet:
    """An untrained NbNet for ``vector_dim``-D vectors."""
    return NbNet(
        vector_dim,
        init_channels=config.init_channels,
        block_layers=config.block_layers,
        final_block_layers=config.final_block_layers,
        growth=config.growth,
        connectivity=config.connectivity,
    )


def perceptual_network(config: NbNetConfig, device: torch.device) -> tuple[nn.Module, str]:
    """The frozen feature network of the perceptual phase and a description of it."""
    if config.vgg19_weights:
        net: nn.Module = VGG19Features(config.perceptual_layer).load_vgg19(config.vgg19_weights)
        source = f"vgg19:{config.perceptual_layer}:{Path(config.vgg19_weights).name}"
    else:
        from reconstruction.recognizers import get_recognizer

        recognizer = get_recognizer(config.perceptual_recognizer)
        if not getattr(recognizer, "differentiable", False):
            raise ValueError(
                f"recognizer {config.perceptual_recognizer!r} is not differentiable; "
                "give vgg19_weights or a torch recognizer"
            )
        net = SignedRangeEmbedder(recognizer.network(device))
        source = f"recognizer:{config.perceptual_recognizer}:embedding-cosine"
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, source


def _feature_loss(features: nn.Module, fake: Tensor, real: Tensor) -> Tensor:
    with torch.no_grad():
        target = features(real)
    out = features(fake)
    if isinstance(features, SignedRangeEmbedder):
        return (1 - (out * target).sum(dim=1)).mean()  # embeddings are unit vectors
    return F.mse_loss(out, target)


def train(
    config: NbNetConfig,
    vectors: Tensor,
    images: Tensor,
    *,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
    features: nn.Module | None = None,
) -> TrainResult:
    """Train NbNet on (N, D) vectors and their (N, 3, H, W) images in [-1, 1] (resized to 160).

    ``features`` overrides the perceptual network (a frozen module taking [-1, 1] images).
    """
    device = resolve_device(device)
    vectors = prepare_vectors(vectors)
    images = prepare_images(images, config.image_size)
    if len(vectors) != len(images):
        raise ValueError(f"{len(vectors)} vectors but {len(images)} images")
    n, dim = vectors.shape
    torch.manual_seed(seed)
    model = build(config, dim).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2)
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_decay_every, config.lr_decay)
    l1_steps = total_steps_for(config.l1_epochs, n, config.batch_size) if config.l1_epochs else 0
    total = l1_steps + (
        total_steps_for(config.perceptual_epochs, n, config.batch_size)
        if config.perceptual_epochs > 0
        else 0
    )
    source = "none"
    if total > l1_steps:
        if features is None:
            features, source = perceptual_network(config, device)
        else:
            source = f"custom:{type(features).__name__}"

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, config.batch_size, seed, step)
        v = vectors[idx].to(device)  # (B, D)
        x = images[idx].to(device)  # (B, 3, 160, 160)
        fake = model(v)  # (B, 3, 160, 160)
        losses: dict[str, Tensor] = {}
        if step < l1_steps or config.perceptual_mode == "add":
            losses["l1"] = F.l1_loss(fake, x)
        if step >= l1_steps:
            losses["perceptual"] = config.perceptual_weight * _feature_loss(features, fake, x)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {k: v.item() for k, v in losses.items()}

    meta = {"method": METHOD, "config": config_dict(config), "seed": seed, "data": [n, dim]}
    run = run_training(
        modules={"model": model},
        optimizers={"model": optimizer},
        schedulers={"model": scheduler},
        step_fn=step_fn,
        total_steps=total,
        seed=seed,
        run_meta=meta,
        checkpoint_dir=checkpoint_dir,
        max_steps=max_steps,
        progress=progress,
        description=METHOD,
    )
    model.perceptual_source = source  # recorded for provenance
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
    """(N, D) vectors -> (N, 3, 160, 160) images in [-1, 1], on the model's device, as CPU."""
    return generate_images(model, vectors, batch_size=batch_size)


def save_model(path: str | Path, result: TrainResult) -> Path:
    """Save a trained NbNet with its config (see ``load_model``)."""
    return save_model_file(
        path,
        method=METHOD,
        config=result.config,
        vector_dim=result.model.vector_dim,
        model=result.model,
        seed=result.seed,
        steps=result.steps,
        perceptual_source=getattr(result.model, "perceptual_source", ""),
    )


def load_model(path: str | Path, device: DeviceLike = "cpu") -> NbNet:
    """A trained NbNet from ``save_model``'s file, in eval mode on ``device``."""
    payload = load_model_file(path, METHOD)
    config = replace(NbNetConfig(), **config_from_dict(payload["config"]))
    model = build(config, payload["vector_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
