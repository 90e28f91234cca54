"""Eigenfaces: black-box face reconstruction by random search in an eigenface basis.

Paper: Razzhigaev, Kireev, Udovichenko, Petiushko, "Darker than black-box: face
reconstruction from similarity queries" (arXiv:2106.14290), as used by Wenger et al. (2022):
"2000 iterations with batch size 64". Defaults follow the authors' code
(github.com/papermsucode/fullbboxrestoration, ``eigenfaces_privacy_pipeline.py`` and
``recover_face.ipynb``): batch 64, z ~ N(0, I_1024), one random sign per candidate, delta
clamped to [−1, 1], ten 100-iteration restarts at lr 0.005 keeping the best, then lr 0.001.
Dec and the mean face come from ``reconstruction.methods.eigenbasis`` (fitted here, nothing
downloaded); the image space is documented there: x = uint8 / 127.5 − 1.

Only F's output vectors are used, never its gradients: F is wrapped in :class:`BlackBox`, which
runs it under ``torch.inference_mode()`` (no autograd graph can exist) or, for recognizers
without a torch module (dlib), on uint8 numpy arrays through ``embed()``.

Departures from the original, and why:
- Elitist step (1 + λ): a candidate replaces the current point only when its cosine beats the
  current best. The original moved to the best of each batch even when it was worse than the
  point it came from (a (1, λ) strategy); keeping the best is never worse under a fixed query
  budget and makes "keeping the best so far" exact (``accept_only_improvements``).
- Antithetic pairs: 32 codes z are drawn per iteration and each is tried with both signs
  (``antithetic``), instead of 64 codes with independent random signs: the same 64 queries,
  half the decoder work, and a direction and its opposite are both probed.
- The original fed F ``mean_face + delta`` unclamped (and a mean face halved in contrast);
  here the image is clamped to the valid pixel range, because F is a black box that takes
  images, and the full mean face of the training split is used.
- For torch recognizers (``faceres``, ``mobileface``) candidates are sent as float images in
  [0, 1] (the same input ``embed()`` builds from uint8), so steps smaller than one grey level
  are not rounded away; the stored result is the uint8 image and its cosine is measured on
  that image through ``embed()``. dlib only takes uint8 images, so its candidates are rounded.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reconstruction.methods.base import ReconstructionResult
from reconstruction.methods.eigenbasis import EigenBasis, from_unit

__all__ = ["BlackBox", "EigenfacesConfig", "reconstruct"]

CHECKPOINT_FORMAT = "fvr-eigenfaces-checkpoint/1"


@dataclass(frozen=True)
class EigenfacesConfig:
    """The attack's schedule; defaults are the paper's settings (2000 × 64 ≈ 128k queries)."""

    batch_size: int = 64
    iterations: int = 2000
    restarts: int = 10
    restart_iterations: int = 100
    lr_restart: float = 0.005
    lr_refine: float = 0.001
    antithetic: bool = True
    accept_only_improvements: bool = True
    checkpoint_every: int = 100  # iterations between checkpoints (when a path is given)

    @classmethod
    def tiny(cls) -> EigenfacesConfig:
        """Two 5-iteration restarts then 10 refining iterations of 8 candidates: CPU tests."""
        return cls(batch_size=8, iterations=20, restarts=2, restart_iterations=5)

    @classmethod
    def budget(cls, iterations: int) -> EigenfacesConfig:
        """A shorter (or longer) run in the paper's proportions: half of it in restarts of up
        to 100 iterations, the rest refining; batch and learning rates as in the paper."""
        if iterations == cls.iterations:
            return cls()
        if iterations < 2:
            raise ValueError("an Eigenfaces run needs at least 2 iterations")
        restart_iterations = min(100, iterations // 2)
        return cls(
            iterations=iterations,
            restarts=max(1, iterations // (2 * restart_iterations)),
            restart_iterations=restart_iterations,
        )

    def __post_init__(self) -> None:
        if self.batch_size < 2 or (self.antithetic and self.batch_size % 2):
            raise ValueError("batch_size must be ≥ 2 (and even with antithetic pairs)")
        if self.restarts * self.restart_iterations > self.iterations:
            raise ValueError("restarts × restart_iterations exceeds iterations")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BlackBox:
    """F seen only through its output vectors; counts queries and times the forward pass."""

    def __init__(self, recognizer: Any, *, device: str) -> None:
        self.recognizer = recognizer
        self.device = torch.device(device)
        self.queries = 0
        self.forward_seconds = 0.0
        network = getattr(recognizer, "network", None)
        self._network = network(self.device).eval() if callable(network) else None
        self._embed_device = str(self.device) if self._network is not None else "cpu"

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) in [−1, 1] → (B, D) L2-normalised vectors on the images' device."""
        self._sync()
        start = time.perf_counter()
        with torch.inference_mode():
            if self._network is not None:
                out = self._network((images + 1) / 2)  # (B, D), input RGB in [0, 1]
            else:
                vectors = self.recognizer.embed(from_unit(images), device=self._embed_device)
                out = torch.from_numpy(np.asarray(vectors, np.float32)).to(images.device)
        self._sync()
        self.forward_seconds += time.perf_counter() - start
        self.queries += len(images)
        return out.float()

    def embed_uint8(self, image: np.ndarray) -> np.ndarray:
        """F's vector of one stored uint8 image (H, W, 3), as anyone would compute it."""
        start = time.perf_counter()
        vector = self.recognizer.embed(image[None], device=self._embed_device)[0]
        self.forward_seconds += time.perf_counter() - start
        self.queries += 1
        return vector


def _run_key(
    config: EigenfacesConfig, seed: int, target: np.ndarray, basis: EigenBasis, recognizer: Any
) -> str:
    """What a checkpoint must match to be resumed."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config.as_dict(), sort_keys=True).encode())
    digest.update(f"{seed}|{getattr(recognizer, 'name', '?')}".encode())
    digest.update(str(basis.meta.get("sha256", "")).encode())
    digest.update(np.ascontiguousarray(target, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(state, partial)
    partial.replace(path)  # atomic: a crash never leaves half a checkpoint


@dataclass
class _Search:
    """The search state; everything in it (with the generator's state) is what a checkpoint
    holds. ``delta``/``best``: the current point of this restart or phase and its cosine;
    ``kept_delta``/``kept``: the best over finished restarts."""

    delta: Tensor
    kept_delta: Tensor
    best: float = -float("inf")
    kept: float = -float("inf")
    trace: list[float] = field(default_factory=list)
    start_iteration: int = 0
    seconds_before: float = 0.0
    forward_before: float = 0.0
    queries_before: int = 0


def _search_start(
    shape: torch.Size, *, key: str, checkpoint: Path | None, device: str, generator: Any
) -> _Search:
    """A fresh search at the mean face, or the checkpointed one when it matches ``key``."""
    search = _Search(
        delta=torch.zeros(shape, device=device), kept_delta=torch.zeros(shape, device=device)
    )
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("format") == CHECKPOINT_FORMAT and state.get("key") == key:
            search.start_iteration = state["iteration"]
            search.delta, search.best = state["delta"].to(device), state["best"]
            search.kept_delta, search.kept = state["kept_delta"].to(device), state["kept"]
            search.trace = list(state["trace"])
            generator.set_state(state["rng"])
            search.seconds_before = state["seconds"]
            search.forward_before = state["forward_seconds"]
            search.queries_before = state["queries"]
    return search


def _restart_boundary(search: _Search, iteration: int, refine_from: int) -> None:
    """End of a restart: keep its best, then start again from the mean face (or, after the
    last restart, continue from the best of all restarts at the small lr)."""
    if search.best > search.kept:
        search.kept_delta, search.kept = search.delta.clone(), search.best
    if iteration < refine_from:
        search.delta, search.best = torch.zeros_like(search.delta), -float("inf")
    else:
        search.delta, search.best = search.kept_delta.clone(), search.kept


def _search_step(
    search: _Search,
    *,
    basis: EigenBasis,
    blackbox: BlackBox,
    target_vec: Tensor,
    generator: Any,
    config: EigenfacesConfig,
    lr: float,
    device: str,
) -> None:
    """One iteration: query F with a batch of steps from the current point; maybe move."""
    half = config.batch_size // 2 if config.antithetic else config.batch_size
    codes = torch.randn(half, basis.components, generator=generator, device=device)
    steps = basis.decode(codes)  # (half, 3, S, S), each standardised
    if config.antithetic:
        steps = torch.cat([steps, -steps])  # (B, 3, S, S): ± pairs
    else:
        signs = torch.randint(0, 2, (half, 1, 1, 1), generator=generator, device=device)
        steps = steps * (signs * 2 - 1)
    candidates = (search.delta + lr * steps).clamp(-1, 1)  # (B, 3, S, S) deltas
    images = (basis.mean_face + candidates).clamp(-1, 1)  # (B, 3, S, S)
    vectors = blackbox(images)  # (B, D), F's outputs only
    cosines = vectors @ target_vec / vectors.norm(dim=1).clamp_min(1e-12)  # (B,)
    winner = int(cosines.argmax())
    value = float(cosines[winner])
    if value > search.best or not config.accept_only_improvements:
        search.delta, search.best = candidates[winner].clone(), value


def _checkpoint_state(
    search: _Search,
    key: str,
    done: int,
    generator: Any,
    blackbox: BlackBox,
    session_started: float,
) -> dict[str, Any]:
    """The checkpoint of a search after ``done`` iterations."""
    return {
        "format": CHECKPOINT_FORMAT,
        "key": key,
        "iteration": done,
        "delta": search.delta.cpu(),
        "best": search.best,
        "kept_delta": search.kept_delta.cpu(),
        "kept": search.kept,
        "trace": search.trace,
        "rng": generator.get_state(),
        "seconds": search.seconds_before + time.perf_counter() - session_started,
        "forward_seconds": search.forward_before + blackbox.forward_seconds,
        "queries": search.queries_before + blackbox.queries,
    }


def _search_result(
    search: _Search,
    *,
    basis: EigenBasis,
    blackbox: BlackBox,
    target_vec: Tensor,
    started: float,
    session_started: float,
) -> ReconstructionResult:
    """The best point as a uint8 image, and its cosine measured on that image through F."""
    if search.kept > search.best:  # schedules that end inside the restarts
        search.delta, search.best = search.kept_delta, search.kept
    image = from_unit((basis.mean_face + search.delta).clamp(-1, 1)[None])[0]  # (S, S, 3) uint8
    final_vector = blackbox.embed_uint8(image)
    target_np = target_vec.cpu().numpy()
    cosine = float(final_vector @ target_np / max(np.linalg.norm(final_vector), 1e-12))
    seconds = search.seconds_before + time.perf_counter() - session_started
    # Loading the basis and F before the loop counts in a fresh run, not in a resumed one.
    if search.start_iteration == 0:
        seconds += session_started - started
    return ReconstructionResult(
        image=image,
        cosine=cosine,
        queries=search.queries_before + blackbox.queries,
        seconds=seconds,
        forward_seconds=search.forward_before + blackbox.forward_seconds,
        details={
            "search_cosine": search.best,
            "trace_every_10": [round(v, 5) for v in search.trace[9::10]],
            "resumed_from": search.start_iteration,
            "basis_sha256": basis.meta.get("sha256", ""),
        },
    )


def reconstruct(
    *,
    target: np.ndarray,
    recognizer: Any,
    artifact: EigenBasis | Path | str,
    config: EigenfacesConfig,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
    checkpoint: Path | None = None,
) -> ReconstructionResult:
    """Reconstruct a face from F's vector ``target`` (D,) by black-box random search."""
    from tqdm import tqdm

    started = time.perf_counter()
    basis = artifact if isinstance(artifact, EigenBasis) else EigenBasis.load(artifact)
    basis = basis.to(device)
    blackbox = BlackBox(recognizer, device=device)
    target_vec = torch.as_tensor(np.asarray(target, dtype=np.float32), device=device)
    target_vec = target_vec / target_vec.norm().clamp_min(1e-12)  # (D,)
    generator = torch.Generator(device=device).manual_seed(seed)
    refine_from = config.restarts * config.restart_iterations
    key = _run_key(config, seed, target, basis, recognizer)
    search = _search_start(
        basis.mean_face.shape,  # (3, S, S)
        key=key,
        checkpoint=checkpoint,
        device=device,
        generator=generator,
    )
    bar = tqdm(
        total=config.iterations,
        initial=search.start_iteration,
        desc="eigenfaces",
        unit="it",
        disable=not progress,
    )
    session_started = time.perf_counter()
    for iteration in range(search.start_iteration, config.iterations):
        restarting = iteration < refine_from
        if 0 < iteration <= refine_from and iteration % config.restart_iterations == 0:
            _restart_boundary(search, iteration, refine_from)
        lr = config.lr_restart if restarting else config.lr_refine
        _search_step(
            search,
            basis=basis,
            blackbox=blackbox,
            target_vec=target_vec,
            generator=generator,
            config=config,
            lr=lr,
            device=device,
        )
        search.trace.append(max(search.best, search.kept) if not restarting else search.best)
        bar.update(1)
        if iteration % 10 == 0:
            bar.set_postfix(cos=f"{max(search.best, search.kept):.4f}", lr=lr)
        done = iteration + 1
        if checkpoint is not None and (
            done % config.checkpoint_every == 0 or done == config.iterations
        ):
            state = _checkpoint_state(search, key, done, generator, blackbox, session_started)
            _save_checkpoint(Path(checkpoint), state)
    bar.close()
    return _search_result(
        search,
        basis=basis,
        blackbox=blackbox,
        target_vec=target_vec,
        started=started,
        session_started=session_started,
    )
