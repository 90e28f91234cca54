"""Vec2Face's identity network: a student of F, or another recognizer H, never F unless allowed.

The study gives the attacker black-box access to F, so the identity loss must not
back-propagate through F. By default (``identity_network="student"``, for every F) it uses a
student trained to mimic F, as DiBiGAN/Vec2Face do for a black-box F: insightface's iresnet18
(stages [2, 2, 2, 2]) with a D-dimensional head, trained by ``train_student`` with Adam
(lr 1e-3) on 1 − cos(student(x), F(x)) over the reconstructor's training faces — F's vectors
of them, which the attacker obtains by querying F (a choice; the original's student is not
published). Another differentiable recognizer H may be named instead; F itself is refused
unless ``allow_white_box`` (``feature_networks.check_black_box``). See ``vec2face``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.feature_networks import (
    STUDENT,
    FeatureNetwork,
    check_black_box,
    differentiable_recognizer,
    second_recognizer,
)
from reconstruction.recognizers.backbones.iresnet import IResNet
from reconstruction.training import (
    DeviceLike,
    SignedRangeEmbedder,
    TrainResult,
    batch_indices,
    config_dict,
    prepare_images,
    prepare_vectors,
    resolve_device,
    run_training,
    total_steps_for,
)

if TYPE_CHECKING:
    from reconstruction.methods.vec2face import Vec2FaceConfig

__all__ = [
    "StudentConfig",
    "StudentEmbedder",
    "identity_network",
    "resolve_identity",
    "train_student",
]


@dataclass(frozen=True)
class StudentConfig:
    """A student that mimics a non-differentiable F (iresnet18 by default)."""

    layers: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    input_size: int = 112
    epochs: float = 20
    batch_size: int = 128
    lr: float = 1e-3

    @classmethod
    def tiny(cls) -> StudentConfig:
        """Two 8/16-channel stages on 16×16 crops, a few steps."""
        return cls(layers=(1, 1), widths=(8, 16), input_size=16, epochs=2, batch_size=4)


class StudentEmbedder(nn.Module):
    """[-1, 1] images (any size) -> unit vectors from an iresnet trained to mimic F."""

    def __init__(self, config: StudentConfig, vector_dim: int) -> None:
        super().__init__()
        self.input_size = config.input_size
        self.backbone = IResNet(
            config.layers,
            widths=config.widths,
            num_features=vector_dim,
            input_size=config.input_size,
        )

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[-1] != self.input_size:
            images = F.interpolate(
                images, size=self.input_size, mode="bilinear", antialias=True
            )  # (B, 3, 112, 112)
        return F.normalize(self.backbone(images), dim=1)  # (B, D)


def train_student(
    config: StudentConfig,
    images: Tensor,
    targets: Tensor,
    *,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
) -> TrainResult:
    """Fit a student to F: (N, 3, H, W) images in [-1, 1] and F's (N, D) embeddings of them."""
    device = resolve_device(device)
    images = prepare_images(images, config.input_size)
    targets = prepare_vectors(targets)
    n, dim = targets.shape
    torch.manual_seed(seed)
    student = StudentEmbedder(config, dim).to(device)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=config.lr)

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, config.batch_size, seed, step)
        out = student(images[idx].to(device))  # (B, D)
        loss = (1 - (out * targets[idx].to(device)).sum(dim=1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"cos_loss": loss.item()}

    total = total_steps_for(config.epochs, n, config.batch_size)
    meta = {"method": "student", "config": config_dict(config), "seed": seed, "data": [n, dim]}
    run = run_training(
        modules={"student": student},
        optimizers={"student": optimizer},
        schedulers={},
        step_fn=step_fn,
        total_steps=total,
        seed=seed,
        run_meta=meta,
        checkpoint_dir=checkpoint_dir,
        max_steps=max_steps,
        progress=progress,
        description="student",
    )
    return TrainResult.of(
        run,
        model=student,
        method="student",
        config=config,
        seed=seed,
        device=device,
        total_steps=total,
    )


def _check_identity(network: str, recognizer: str, *, allow_white_box: bool) -> bool:
    """Refuse F as the identity network unless allowed, and a non-differentiable one;
    returns whether the network is F (white-box)."""
    white_box = check_black_box(
        network,
        recognizer,
        role="Vec2Face's identity",
        allow_white_box=allow_white_box,
        instead=(
            f"a student of F (--feature-network {STUDENT}, the default) or another "
            f"recognizer (--feature-network {second_recognizer(recognizer)})"
        ),
    )
    if not differentiable_recognizer(network):
        raise ValueError(
            f"recognizer {network!r} is not differentiable: use a student of F "
            f"(identity_network={STUDENT!r}) or name a torch recognizer"
        )
    return white_box


def resolve_identity(config: Vec2FaceConfig, recognizer: str) -> Vec2FaceConfig:
    """``config`` checked for F = ``recognizer`` before any training: F itself raises
    ``WhiteBoxError`` unless ``config.allow_white_box``; a student needs no check."""
    if config.identity_network != STUDENT:
        _check_identity(config.identity_network, recognizer, allow_white_box=config.allow_white_box)
    return config


def identity_network(
    recognizer_name: str,
    *,
    network: str = STUDENT,
    allow_white_box: bool = False,
    device: DeviceLike = "cpu",
    images: Tensor | None = None,
    targets: Tensor | None = None,
    student_config: StudentConfig | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
) -> FeatureNetwork:
    """The identity loss's frozen network when F = ``recognizer_name`` (see module doc).

    ``network``: ``"student"`` trains a student of F on ``images`` ([-1, 1]) and F's vectors
    of them (``targets``; computed by querying F when not given); another registered
    recognizer is used as H; F itself only with ``allow_white_box`` (``WhiteBoxError``).
    """
    from reconstruction.recognizers.registry import get_recognizer

    device = resolve_device(device)
    if network == STUDENT:
        if images is None:
            raise ValueError(f"a student of {recognizer_name!r} needs the training images")
        if targets is None:
            pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            recognizer = get_recognizer(recognizer_name)
            embedded = recognizer.embed(np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy()))
            targets = torch.from_numpy(embedded)
        result = train_student(
            student_config or StudentConfig(),
            images,
            targets,
            seed=seed,
            device=device,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
        )
        return FeatureNetwork(
            result.model.eval(), f"student-of:{recognizer_name}", white_box=False, in_f_space=True
        )
    white_box = _check_identity(network, recognizer_name, allow_white_box=allow_white_box)
    module = SignedRangeEmbedder(get_recognizer(network).network(device)).eval()
    return FeatureNetwork(
        module, f"recognizer:{network}", white_box=white_box, in_f_space=white_box
    )
