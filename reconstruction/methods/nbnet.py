"""NBNet (Mai et al., TPAMI 2019): train NbNet-B to map F's vectors to 160×160 faces.

Defaults are the study's settings (Wenger et al. 2022, § IV: NbNet-B, 80 epochs, batch 64,
"pixel mean-absolute-error loss for 60 epochs and add perceptual loss for the last 20") and
the authors' code (https://github.com/csgcmai/NBNet ``src/train_of2img_mae.py`` and
``src/train_of2img_percept.py``): Adam lr 2e-4, β1 0.5, no weight decay, learning rate ×0.94
every 5000 iterations (MXNet ``FactorScheduler(step=5000, factor=0.94)``), N(0, 0.02)
initialisation, perceptual layer VGG-19 relu3_2 with a squared-error loss on its features.

Perceptual phase (the last ``perceptual_epochs``), two readings:

- ``perceptual_mode="replace"`` (default, the original code): the original trains the L1
  model with ``train_of2img_mae.py``, then ``train_of2img_percept.py`` reloads it and
  back-propagates only the feature difference, so the perceptual loss **replaces** L1.
- ``perceptual_mode="added"`` (the paper's text, "add perceptual loss"): L1 + perceptual.

Either way the perceptual phase starts a **fresh Adam** (lr 2e-4, β1 0.5) whose ×0.94 per
5000 steps decay restarts at the phase's first step, as the original's second script does
(``perceptual_restart=True``). ``perceptual_restart=False`` carries the L1 phase's optimiser
and decayed rate over — about 7e-7 after 60 WebFace epochs (463,000 steps), where the phase
barely trains; it is kept for comparison with reconstructors trained before this default.

Perceptual network and the black-box rule (``feature_networks``): with ``vgg19_weights`` (a
torchvision-style VGG-19 state dict, which cannot be downloaded here) the original relu3_2
loss is used. Otherwise the loss is 1 − cos between the embeddings of the reconstruction and
of the real face in a registered differentiable recognizer, ``perceptual_recognizer`` —
by default (empty) the first one that is not F (mobileface, or faceres when F is mobileface):
an identity feature loss instead of a texture one. F itself is refused unless
``allow_white_box`` (its gradients would be white-box access, outside the paper's threat
model). ``train`` records the network used and whether it was F in the result's
``provenance`` (``feature_network``, ``white_box``), and ``save_model`` writes them to the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.feature_networks import (
    FeatureNetwork,
    check_black_box,
    differentiable_recognizer,
    second_recognizer,
)
from reconstruction.methods.networks.nbnet import NbNet, VGG19Features
from reconstruction.training import (
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

__all__ = [
    "PERCEPTUAL_MODES",
    "NbNetConfig",
    "build",
    "load_model",
    "perceptual_network",
    "reconstruct",
    "resolve_perceptual",
    "save_model",
    "train",
]

METHOD = "nbnet"
PERCEPTUAL_MODES = ("replace", "added")  # the original code's reading, the paper text's


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
    perceptual_mode: str = "replace"  # "replace" (original code) or "added" (paper text)
    perceptual_restart: bool = True  # fresh Adam and lr schedule for the perceptual phase
    perceptual_weight: float = 1.0
    perceptual_layer: str = "relu3_2"
    vgg19_weights: str = ""  # path to a VGG-19 state dict; empty: use a recognizer
    perceptual_recognizer: str = ""  # empty: the first differentiable recognizer other than F
    allow_white_box: bool = False  # permit F itself as the perceptual network

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
        if self.perceptual_mode not in PERCEPTUAL_MODES:
            raise ValueError(
                f"perceptual_mode must be one of {', '.join(PERCEPTUAL_MODES)}: "
                f"{self.perceptual_mode!r}"
            )
        if self.vgg19_weights and self.perceptual_recognizer:
            raise ValueError("give vgg19_weights or perceptual_recognizer, not both")


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


def resolve_perceptual(config: NbNetConfig, recognizer: str) -> NbNetConfig:
    """``config`` with its perceptual network named for F = ``recognizer``: unchanged with
    VGG-19 weights; else the named recognizer, or the first differentiable one other than F.
    F itself raises ``WhiteBoxError`` unless ``config.allow_white_box``."""
    if config.vgg19_weights or config.perceptual_epochs <= 0:
        return config
    name = config.perceptual_recognizer or second_recognizer(recognizer)
    check_black_box(
        name,
        recognizer,
        role="NBNet's perceptual",
        allow_white_box=config.allow_white_box,
        instead=(
            f"another recognizer (--feature-network {second_recognizer(recognizer)}) or "
            "VGG-19 weights (--vgg19-weights PATH)"
        ),
    )
    if not differentiable_recognizer(name):
        raise ValueError(
            f"recognizer {name!r} is not differentiable: name a torch recognizer as the "
            "perceptual network or give VGG-19 weights"
        )
    return replace(config, perceptual_recognizer=name)


def perceptual_network(
    config: NbNetConfig, device: torch.device, *, recognizer: str
) -> FeatureNetwork:
    """The frozen feature network of the perceptual phase when F = ``recognizer``."""
    config = resolve_perceptual(config, recognizer)
    if config.vgg19_weights:
        net: nn.Module = VGG19Features(config.perceptual_layer).load_vgg19(config.vgg19_weights)
        source = f"vgg19:{config.perceptual_layer}:{Path(config.vgg19_weights).name}"
    else:
        from reconstruction.recognizers.registry import get_recognizer

        name = config.perceptual_recognizer
        net = SignedRangeEmbedder(get_recognizer(name).network(device))
        source = f"recognizer:{name}"
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    white_box = not config.vgg19_weights and config.perceptual_recognizer == recognizer
    return FeatureNetwork(net, source, white_box=white_box, in_f_space=white_box)


def _feature_loss(features: nn.Module, fake: Tensor, real: Tensor) -> Tensor:
    with torch.no_grad():
        target = features(real)
    out = features(fake)
    if isinstance(features, SignedRangeEmbedder):
        return (1 - (out * target).sum(dim=1)).mean()  # embeddings are unit vectors
    return F.mse_loss(out, target)


def _adam(
    config: NbNetConfig, model: nn.Module
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
    """The original's optimiser: Adam (lr, β1 0.5) with lr × decay every ``lr_decay_every``."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2)
    )
    return optimizer, torch.optim.lr_scheduler.StepLR(
        optimizer, config.lr_decay_every, config.lr_decay
    )


def _phase_optimizers(
    config: NbNetConfig, model: nn.Module, *, perceptual: bool
) -> tuple[dict[str, torch.optim.Adam], dict[str, torch.optim.lr_scheduler.StepLR]]:
    """One optimiser per phase when the perceptual phase restarts (the original's second
    script); both are checkpointed, so a resumed run continues either phase exactly."""
    optimizer, scheduler = _adam(config, model)
    optimizers, schedulers = {"model": optimizer}, {"model": scheduler}
    if config.perceptual_restart and perceptual:
        optimizers["perceptual"], schedulers["perceptual"] = _adam(config, model)
    return optimizers, schedulers


def _phase_steps(config: NbNetConfig, n: int) -> tuple[int, int]:
    """(steps of the L1 phase, steps of both phases) for ``n`` training pairs."""
    l1_steps = total_steps_for(config.l1_epochs, n, config.batch_size) if config.l1_epochs else 0
    total = l1_steps + (
        total_steps_for(config.perceptual_epochs, n, config.batch_size)
        if config.perceptual_epochs > 0
        else 0
    )
    return l1_steps, total


def _perceptual_features(
    config: NbNetConfig,
    features: nn.Module | None,
    *,
    recognizer: str | None,
    device: torch.device,
    provenance: dict[str, Any],
) -> nn.Module | None:
    """The perceptual phase's frozen network (``features``, or chosen other than F); records
    which one it is in ``provenance``."""
    if features is not None:
        provenance["feature_network"] = f"custom:{type(features).__name__}"
        return features
    if recognizer is None:
        raise ValueError(
            "name F (recognizer=...) so that the perceptual network can be chosen "
            "other than F, or pass features"
        )
    network = perceptual_network(config, device, recognizer=recognizer)
    provenance.update(feature_network=network.source, white_box=network.white_box)
    return network.module


def _nbnet_step_fn(
    *,
    model: nn.Module,
    features: nn.Module | None,
    vectors: Tensor,
    images: Tensor,
    config: NbNetConfig,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    l1_steps: int,
    seed: int,
    device: torch.device,
) -> Callable[[int], dict[str, float]]:
    """One training step: L1 before ``l1_steps``, then the perceptual loss (with or without
    L1, by ``perceptual_mode``), each phase through its optimiser."""
    n = len(vectors)

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, config.batch_size, seed, step)
        v = vectors[idx].to(device)  # (B, D)
        x = images[idx].to(device)  # (B, 3, 160, 160)
        fake = model(v)  # (B, 3, 160, 160)
        perceptual = step >= l1_steps
        phase = "perceptual" if perceptual and "perceptual" in optimizers else "model"
        losses: dict[str, Tensor] = {}
        if not perceptual or config.perceptual_mode == "added":
            losses["l1"] = F.l1_loss(fake, x)
        if perceptual:
            losses["perceptual"] = config.perceptual_weight * _feature_loss(features, fake, x)
        loss = sum(losses.values())
        lr = optimizers[phase].param_groups[0]["lr"]
        optimizers[phase].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[phase].step()
        schedulers[phase].step()
        return {**{k: v.item() for k, v in losses.items()}, "lr": lr}

    return step_fn


def train(
    config: NbNetConfig,
    vectors: Tensor,
    images: Tensor,
    *,
    seed: int,
    recognizer: str | None = None,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
    features: nn.Module | None = None,
) -> TrainResult:
    """Train NbNet on (N, D) vectors and their (N, 3, H, W) images in [-1, 1] (resized to 160).

    ``recognizer``: F's registered name, needed to choose (and check) the perceptual network
    unless ``features`` overrides it (a frozen module taking [-1, 1] images).
    """
    device = resolve_device(device)
    vectors = prepare_vectors(vectors)
    images = prepare_images(images, config.image_size)
    if len(vectors) != len(images):
        raise ValueError(f"{len(vectors)} vectors but {len(images)} images")
    n, dim = vectors.shape
    torch.manual_seed(seed)
    model = build(config, dim).to(device)
    l1_steps, total = _phase_steps(config, n)
    provenance = {
        "feature_network": "none",
        "white_box": False,
        "allow_white_box": config.allow_white_box,
    }
    if total > l1_steps:
        features = _perceptual_features(
            config, features, recognizer=recognizer, device=device, provenance=provenance
        )

    optimizers, schedulers = _phase_optimizers(config, model, perceptual=total > l1_steps)
    step_fn = _nbnet_step_fn(
        model=model,
        features=features,
        vectors=vectors,
        images=images,
        config=config,
        optimizers=optimizers,
        schedulers=schedulers,
        l1_steps=l1_steps,
        seed=seed,
        device=device,
    )
    meta = {"method": METHOD, "config": config_dict(config), "seed": seed, "data": [n, dim]}
    run = run_training(
        modules={"model": model},
        optimizers=optimizers,
        schedulers=schedulers,
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
        provenance=provenance,
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
        **result.provenance,
    )


def load_model(path: str | Path, device: DeviceLike = "cpu") -> NbNet:
    """A trained NbNet from ``save_model``'s file, in eval mode on ``device``."""
    payload = load_model_file(path, METHOD)
    config = replace(NbNetConfig(), **config_from_dict(payload["config"]))
    model = build(config, payload["vector_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(resolve_device(device)).eval()
