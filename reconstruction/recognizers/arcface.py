"""ArcFace training for the torch face backbones (``arcface-r50``, ``arcface-effnet``).

Paper: J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
Face Recognition", CVPR 2019. The loss and the defaults follow insightface
``recognition/arcface_torch`` (``losses.py`` ``ArcFace``, ``configs/ms1mv3_r50.py``): scale
s = 64, additive angular margin m = 0.5 with the "hard margin" fallback cos θ − m·sin m once
θ + m > π; SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128 per GPU, 20 epochs,
polynomial (power 2) learning-rate decay, random horizontal flips. The study's extractors
were trained this way on MS1M; no weights ship with this project — train them here or load
a user ``.pth`` (``backbones.load_backbone``; the backbone registry is ``backbones``).

Several GPUs: run under ``torchrun --nproc_per_node=K``. When ``WORLD_SIZE`` is set the
process group is initialised (NCCL on CUDA, else Gloo), each rank uses ``cuda:LOCAL_RANK``,
takes its share of every global batch (``batch_size`` is per process, as in insightface) and
the model is wrapped in DistributedDataParallel; only rank 0 writes checkpoints. Without
``WORLD_SIZE`` nothing distributed is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.recognizers.backbones import build_backbone
from reconstruction.training import (
    DeviceLike,
    TrainResult,
    batch_indices,
    config_dict,
    prepare_images,
    resolve_device,
    run_training,
    total_steps_for,
    world_info,
)

__all__ = [
    "ArcFaceHead",
    "ExtractorConfig",
    "arcface_logits",
    "train_extractor",
]


def arcface_logits(cosine: Tensor, labels: Tensor, *, s: float = 64.0, m: float = 0.5) -> Tensor:
    """Scaled logits s·cos θ_j, with the true class's cos θ_y replaced by cos(θ_y + m).

    As insightface: where θ_y + m > π (cos θ_y ≤ cos(π − m)) the target logit is
    cos θ_y − m·sin(π − m) instead, which keeps it decreasing in θ_y.
    """
    cos_y = cosine.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)  # (B, 1)
    sin_y = torch.sqrt(1 - cos_y * cos_y)
    with_margin = cos_y * math.cos(m) - sin_y * math.sin(m)  # cos(θ + m)
    fallback = cos_y - math.sin(math.pi - m) * m
    target = torch.where(cos_y > math.cos(math.pi - m), with_margin, fallback)
    logits = cosine.scatter(1, labels[:, None], target)  # (B, C)
    return logits * s


class ArcFaceHead(nn.Module):
    """Class centres W (C, D) and the ArcFace loss on (B, D) embeddings."""

    def __init__(
        self, embedding_dim: int, num_classes: int, *, s: float = 64.0, m: float = 0.5
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_dim)))
        self.s = s
        self.m = m

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T  # (B, C)
        return F.cross_entropy(arcface_logits(cosine, labels, s=self.s, m=self.m), labels)


@dataclass(frozen=True)
class ExtractorConfig:
    """ArcFace training; defaults are insightface arcface_torch's (ms1mv3_r50)."""

    s: float = 64.0
    m: float = 0.5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128  # per process
    epochs: float = 20
    poly_power: float = 2.0
    flip: bool = True
    input_size: int = 112

    @classmethod
    def tiny(cls) -> ExtractorConfig:
        """A few steps of 8 on 16×16 crops (use with a tiny backbone)."""
        return cls(batch_size=8, epochs=2, input_size=16, lr=0.01)


class _Trainable(nn.Module):
    def __init__(self, backbone: nn.Module, head: ArcFaceHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        return self.head(self.backbone(images), labels)


def _process_group_join(device: DeviceLike, local_rank: int) -> DeviceLike:
    """Under torchrun: initialise the process group; on CUDA use this rank's GPU."""
    import torch.distributed as dist

    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return device


def _ddp_wrapped(trainable: nn.Module, device: torch.device) -> nn.Module:
    """``trainable`` in DistributedDataParallel (on this rank's GPU when on CUDA)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        trainable, device_ids=[device.index] if device.type == "cuda" else None
    )


def _sgd_with_poly_decay(
    trainable: nn.Module, config: ExtractorConfig, total: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """insightface's optimiser: SGD with momentum and weight decay, lr × (1 − step/total)^p."""
    params = [p for p in trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1 - step / total) ** config.poly_power
    )
    return optimizer, scheduler


def _arcface_step_fn(
    *,
    wrapped: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: ExtractorConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    seed: int,
    device: torch.device,
) -> Callable[[int], dict[str, float]]:
    """One step: this rank's share of the global batch, random flips, ArcFace loss, SGD."""
    rank, _, world = world_info()
    n = len(images)
    global_batch = config.batch_size * world

    def step_fn(step: int) -> dict[str, float]:
        idx = batch_indices(n, global_batch, seed, step)[rank::world]
        x = images[idx].to(device)  # (B, 3, 112, 112)
        if config.flip:
            flip = torch.rand(len(x), device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = wrapped(x, labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"arcface": loss.item()}

    return step_fn


def train_extractor(
    backbone: nn.Module | str,
    images: Tensor,
    labels: Tensor,
    config: ExtractorConfig | None = None,
    *,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
    checkpoint_every: int = 1000,
    log_every: int = 50,
) -> TrainResult:
    """Train a backbone with the ArcFace loss on (N, 3, H, W) images in [-1, 1] and (N,)
    integer identity labels; returns the backbone (eval mode) and the head in ``extras``.
    ``checkpoint_every`` and ``log_every`` are in steps (e.g. one epoch's)."""
    config = config or ExtractorConfig()
    name = backbone if isinstance(backbone, str) else type(backbone).__name__
    model = build_backbone(backbone) if isinstance(backbone, str) else backbone
    rank, local_rank, world = world_info()
    if world > 1:
        device = _process_group_join(device, local_rank)
    device = resolve_device(device)
    images = prepare_images(images, config.input_size)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    head = ArcFaceHead(model.num_features, classes, s=config.s, m=config.m)
    trainable = _Trainable(model, head).to(device)
    wrapped = _ddp_wrapped(trainable, device) if world > 1 else trainable
    total = total_steps_for(config.epochs, len(images), config.batch_size * world)
    optimizer, scheduler = _sgd_with_poly_decay(trainable, config, total)
    step_fn = _arcface_step_fn(
        wrapped=wrapped,
        images=images,
        labels=labels,
        config=config,
        optimizer=optimizer,
        scheduler=scheduler,
        seed=seed,
        device=device,
    )
    meta = {
        "method": f"arcface:{name}",
        "config": config_dict(config),
        "seed": seed,
        "data": [len(images), classes, world],
    }
    run = run_training(
        modules={"model": trainable},
        optimizers={"model": optimizer},
        schedulers={"model": scheduler},
        step_fn=step_fn,
        total_steps=total,
        seed=seed + rank,
        run_meta=meta,
        checkpoint_dir=checkpoint_dir,
        max_steps=max_steps,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        progress=progress,
        description=f"arcface {name}",
        is_main_process=rank == 0,
    )
    return TrainResult.of(
        run,
        model=model.eval(),
        method=f"arcface:{name}",
        config=config,
        seed=seed,
        device=device,
        total_steps=total,
        extras={"head": head},
    )
