"""The training loop shared by the parametric FVR methods and ``arcface.train_extractor``.

One loop for every trainer: explicit seed and device, deterministic mini-batches (the order of
epoch e is ``randperm`` under seed (seed, e), so a resumed run draws the same batches), a tqdm
progress bar, and a checkpoint (modules, optimisers, schedulers, RNG state, loss history) that
is written atomically every ``checkpoint_every`` steps, every ``checkpoint_seconds`` and at
the end. Calling a trainer again with the same ``checkpoint_dir`` resumes from the saved
step; a checkpoint written by a different run (method, config, seed, data shape) is refused
rather than silently continued. A resumed run on CPU ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CheckpointMismatchError",
    "SignedRangeEmbedder",
    "TrainResult",
    "batch_indices",
    "config_dict",
    "config_from_dict",
    "generate_images",
    "load_model_file",
    "prepare_images",
    "prepare_vectors",
    "resolve_device",
    "run_training",
    "save_model_file",
    "steps_per_epoch",
]

CHECKPOINT_NAME = "checkpoint.pt"
DeviceLike = str | torch.device


class CheckpointMismatchError(ValueError):
    """A checkpoint in ``checkpoint_dir`` belongs to a different training run."""


class TrainingRun(NamedTuple):
    """What `run_training` did: the steps it ran, their losses, where it checkpointed."""

    start_step: int
    steps: int
    history: list[dict[str, float]]
    checkpoint_path: Path | None
    wall_s: float


@dataclass
class TrainResult:
    """What a trainer returns: the trained network (eval mode) and the run's provenance."""

    model: nn.Module
    method: str
    config: Any
    seed: int
    device: str
    steps: int  # the step reached (== total_steps unless stopped by max_steps)
    total_steps: int
    start_step: int  # > 0 when the run resumed from a checkpoint
    history: list[dict[str, float]]  # mean losses per logging window, with "step"
    wall_s: float
    checkpoint_path: Path | None = None
    extras: dict[str, nn.Module] = field(default_factory=dict)  # e.g. the critic
    provenance: dict[str, Any] = field(default_factory=dict)  # e.g. the feature network used

    @classmethod
    def of(
        cls,
        run: TrainingRun,
        *,
        model: nn.Module,
        method: str,
        config: Any,
        seed: int,
        device: Any,
        total_steps: int,
        extras: dict[str, nn.Module] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> TrainResult:
        """The result of a finished (or stopped) `run_training` run."""
        return cls(
            model=model,
            method=method,
            config=config,
            seed=seed,
            device=str(device),
            steps=run.steps,
            total_steps=total_steps,
            start_step=run.start_step,
            history=run.history,
            wall_s=run.wall_s,
            checkpoint_path=run.checkpoint_path,
            extras=extras or {},
            provenance=provenance or {},
        )

    @property
    def complete(self) -> bool:
        """Whether training ran to its configured length."""
        return self.steps >= self.total_steps


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    if not is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


class SignedRangeEmbedder(nn.Module):
    """Adapt an embedder of RGB in [0, 1] (``recognizers``' ``network()``) to [-1, 1] input."""

    def __init__(self, embedder: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, images: Tensor) -> Tensor:
        return self.embedder((images + 1) / 2)  # (B, D), as the embedder returns


def config_from_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of ``config_dict`` for ``dataclasses.replace`` (lists become tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def generate_images(model: nn.Module, vectors: Tensor, *, batch_size: int = 64) -> Tensor:
    """Run a vector → image network in eval mode; (N, 3, S, S) in [-1, 1] on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    vectors = prepare_vectors(vectors)
    out = []
    with torch.inference_mode():
        for chunk in vectors.split(batch_size):
            out.append(model(chunk.to(device)).clamp(-1, 1).cpu())
    return torch.cat(out)


def resolve_device(device: DeviceLike | None) -> torch.device:
    """``None``/"auto" picks CUDA when present, else CPU; anything else is taken as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_vectors(vectors: Tensor) -> Tensor:
    """(N, D) float vectors, L2-normalised (recognizers' outputs already are)."""
    vectors = torch.as_tensor(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected vectors (N, D), got shape {tuple(vectors.shape)}")
    return F.normalize(vectors.float(), dim=1)


def prepare_images(images: Tensor, size: int) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 3, size, size) float (bilinear, antialiased, if needed)."""
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1], got {images.dtype}")
    images = images.float()
    if images.shape[-2:] != (size, size):
        chunks = [
            F.interpolate(c, size=(size, size), mode="bilinear", antialias=True)
            for c in images.split(256)
        ]
        images = torch.cat(chunks).clamp(-1, 1)
    return images


def signed_unit(pixels: Any) -> Tensor:
    """uint8 (N, S, S, 3) -> float tensor (N, 3, S, S) in [-1, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped; ≥ 1)."""
    return max(1, n_samples // batch_size)


def batch_indices(n_samples: int, batch_size: int, seed: int, step: int) -> Tensor:
    """Indices of mini-batch ``step``: a slice of epoch (step // steps_per_epoch)'s permutation."""
    batch = min(batch_size, n_samples)
    per_epoch = steps_per_epoch(n_samples, batch)
    epoch, j = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n_samples, generator=generator)
    return order[j * batch : (j + 1) * batch]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module  # DDP / DataParallel


@dataclass
class _Checkpoint:
    """A run's checkpoint file: what it restores on resume and writes every so often."""

    path: Path | None
    run_meta: dict[str, Any]
    modules: Mapping[str, nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]
    schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler]
    is_main_process: bool

    def resume(self) -> tuple[int, list[dict[str, float]]]:
        """Restore modules, optimisers, schedulers and RNG from the file if there is one;
        returns (first step to run, loss history so far)."""
        if self.path is None or not self.path.is_file():
            return 0, []
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state["meta"] != self.run_meta:
            changed = sorted(
                k
                for k in set(state["meta"]) | set(self.run_meta)
                if state["meta"].get(k) != self.run_meta.get(k)
            )
            raise CheckpointMismatchError(
                f"{self.path} was written by a different run (differs in: {', '.join(changed)}); "
                "use another checkpoint_dir or delete it"
            )
        for name, module in self.modules.items():
            _unwrap(module).load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        _set_rng_state(state["rng"])
        return int(state["step"]), list(state["history"])

    def save(self, step: int, history: list[dict[str, float]]) -> None:
        """Write the state after ``step`` steps (the main process only)."""
        if self.path is None or not self.is_main_process:
            return
        payload = {
            "step": step,
            "meta": self.run_meta,
            "modules": {n: _unwrap(m).state_dict() for n, m in self.modules.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "rng": _rng_state(),
            "history": history,
        }
        _save_atomic(payload, self.path)


def run_training(
    *,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
    step_fn: Callable[[int], dict[str, float]],
    total_steps: int,
    seed: int,
    run_meta: dict[str, Any],
    checkpoint_dir: str | Path | None,
    checkpoint_every: int = 1000,
    checkpoint_seconds: float = 600.0,
    max_steps: int | None = None,
    progress: bool = False,
    description: str = "train",
    log_every: int = 50,
    is_main_process: bool = True,
) -> TrainingRun:
    """Run ``step_fn(step)`` for steps [start, end) with checkpoints, resume and progress.

    ``run_meta`` identifies the run (method, config, seed, data shape); a checkpoint with
    other meta raises ``CheckpointMismatchError``. The global torch RNG is seeded with
    ``seed`` (and restored from the checkpoint on resume).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    checkpoint = _Checkpoint(path, run_meta, modules, optimizers, schedulers, is_main_process)
    start_step, history = checkpoint.resume()
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
    for module in modules.values():
        module.train()
    started = time.perf_counter()
    last_save = started
    window: dict[str, list[float]] = {}
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=description,
        disable=not (progress and is_main_process),
        dynamic_ncols=True,
    )
    try:
        for step in range(start_step, end_step):
            losses = step_fn(step)
            for key, value in losses.items():
                window.setdefault(key, []).append(float(value))
            done = step + 1
            if done % log_every == 0 or done == end_step:
                means = {k: sum(v) / len(v) for k, v in window.items()}
                history.append({"step": float(done), **means})
                window = {}
                bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
            bar.update(1)
            now = time.perf_counter()
            if done % checkpoint_every == 0 or now - last_save > checkpoint_seconds:
                checkpoint.save(done, history)
                last_save = now
        if end_step > start_step or (path is not None and not path.is_file()):
            checkpoint.save(end_step, history)
    finally:
        bar.close()
    for module in modules.values():
        module.eval()
    return TrainingRun(start_step, end_step, history, path, time.perf_counter() - started)


def save_model_file(
    path: str | Path, *, method: str, config: Any, vector_dim: int, model: nn.Module, **meta: Any
) -> Path:
    """Save a trained reconstructor (state dict + config + vector size) for ``load_model``."""
    path = Path(path)
    payload = {
        "method": method,
        "config": config_dict(config),
        "vector_dim": vector_dim,
        "state_dict": _unwrap(model).state_dict(),
        "meta": meta,
    }
    _save_atomic(payload, path)
    return path


def load_model_file(path: str | Path, method: str) -> dict[str, Any]:
    """Read a file written by ``save_model_file``; it must hold a ``method`` model."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("method") != method:
        raise ValueError(f"{path} holds a {payload.get('method')!r} model, not {method!r}")
    return payload


def world_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables; (0, 0, 1) without them."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 0, 1
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ["WORLD_SIZE"]),
    )


def total_steps_for(epochs: float, n_samples: int, batch_size: int) -> int:
    """Steps for ``epochs`` passes over ``n_samples`` (at least 1)."""
    return max(1, math.ceil(epochs * steps_per_epoch(n_samples, min(batch_size, n_samples))))
