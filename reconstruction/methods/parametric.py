"""Registry adapters for the parametric FVR methods (NBNet, Naive, Vec2Face).

Each parametric module trains a vector → image network (``train``) and runs it
(``reconstruct``). This module gives them the registry's shape: ``train_method`` trains any of
them from F's vectors and aligned faces, ``load`` reads a stored weights file, and ``RUNS``
holds one ``run`` per method with Eigenfaces' signature (``base.ReconstructFn``), taking the
trained weights as ``artifact`` (a loaded network, the file's bytes or its path).

Output size: NBNet draws 160×160 faces (the 160 crop, the same ArcFace framing as the
112×112 crop with more pixels); Naive draws 112×112, Vec2Face 128×128 resized to 112. Every
reconstruction is stored as the 112×112 aligned crop — a larger output is resized (bilinear,
antialiased) — and its cosine is F's vector of that stored uint8 image against the target,
as for Eigenfaces. A reconstruction sends one image through F (that final check).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods import naive, nbnet, vec2face
from reconstruction.methods.base import ReconstructFn, ReconstructionResult
from reconstruction.methods.feature_networks import STUDENT, differentiable_recognizer
from reconstruction.training import (
    DeviceLike,
    TrainResult,
    config_dict,
    config_from_dict,
    resolve_device,
)

__all__ = [
    "MODULES",
    "PRESETS",
    "RUNS",
    "config_for",
    "config_from_artifact",
    "config_with_options",
    "crop_for",
    "load",
    "resolve_feature_network",
    "train_method",
]

STORED_SIZE = 112  # reconstructions are stored as the 112×112 aligned crop
MODULES: dict[str, ModuleType] = {"nbnet": nbnet, "naive": naive, "vec2face": vec2face}
CONFIGS: dict[str, type] = {
    "nbnet": nbnet.NbNetConfig,
    "naive": naive.NaiveConfig,
    "vec2face": vec2face.Vec2FaceConfig,
}
PRESETS = ("tiny", "cpu", "paper")


def _module(method: str) -> ModuleType:
    if method not in MODULES:
        raise ValueError(
            f"{method!r} is not a parametric method; known: {', '.join(sorted(MODULES))}"
        )
    return MODULES[method]


def crop_for(method: str) -> str:
    """The stored crop a method trains on: ``crop160`` for NBNet, ``aligned`` (112) else."""
    _module(method)
    return "crop160" if method == "nbnet" else "aligned"


def config_for(method: str, preset: str, *, epochs: float | None = None, n_images: int = 0) -> Any:
    """The method's config for ``preset`` (tiny, cpu or paper), with ``epochs`` passes over
    the data if given: NBNet splits them 3:1 between the L1 and perceptual phases (the
    paper's 60:20); Vec2Face shows ``epochs × n_images`` images."""
    _module(method)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use {', '.join(PRESETS)}")
    config_class = CONFIGS[method]
    config = config_class() if preset == "paper" else getattr(config_class, preset)()
    if epochs is None:
        return config
    if epochs <= 0:
        raise ValueError("epochs must be positive")
    if method == "naive":
        return replace(config, epochs=epochs)
    if method == "nbnet":
        share = config.l1_epochs / ((config.l1_epochs + config.perceptual_epochs) or 1)
        return replace(config, l1_epochs=epochs * share, perceptual_epochs=epochs * (1 - share))
    return replace(config, total_images=max(1, round(epochs * max(n_images, 1))))


def config_with_options(
    method: str,
    config: Any,
    *,
    perceptual_mode: str | None = None,
    feature_network: str | None = None,
    vgg19_weights: str | Path | None = None,
    allow_white_box: bool = False,
) -> Any:
    """``config`` with the training options that ``train_reconstructor`` exposes; an option
    the method does not have raises ``ValueError``. ``feature_network``: NBNet's perceptual /
    Vec2Face's identity network (a recognizer, or ``student`` for Vec2Face)."""
    _module(method)
    changes: dict[str, Any] = {}
    if perceptual_mode is not None:
        if method != "nbnet":
            raise ValueError(f"perceptual_mode applies to nbnet only, not {method}")
        changes["perceptual_mode"] = perceptual_mode
    if vgg19_weights is not None:
        if method != "nbnet":
            raise ValueError(f"vgg19_weights applies to nbnet only, not {method}")
        path = Path(vgg19_weights).expanduser()
        if not path.is_file():
            raise ValueError(f"no VGG-19 weights file at {path}")
        changes["vgg19_weights"] = str(path.resolve())
    if feature_network is not None:
        if method == "naive":
            raise ValueError("naive has no feature network (pixel loss only)")
        key = "perceptual_recognizer" if method == "nbnet" else "identity_network"
        changes[key] = feature_network
    if allow_white_box:
        if method == "naive":
            raise ValueError("naive has no feature network, so nothing to allow white-box")
        changes["allow_white_box"] = True
    return replace(config, **changes)


def resolve_feature_network(method: str, config: Any, *, recognizer: str) -> Any:
    """``config`` with its feature network named for F = ``recognizer`` (NBNet's automatic
    choice made concrete, so that it is recorded); F itself raises
    ``feature_networks.WhiteBoxError`` unless the config allows white-box access."""
    _module(method)
    if method == "nbnet":
        return nbnet.resolve_perceptual(config, recognizer)
    if method == "vec2face":
        return vec2face.resolve_identity(config, recognizer)
    return config


# Fields added after reconstructors were first stored, with the value that describes how
# those older artifacts were trained (they had no black-box rule, and NBNet's perceptual
# phase continued the L1 phase's optimiser).
_LEGACY = {
    "nbnet": {"perceptual_restart": False, "allow_white_box": True},
    "vec2face": {"allow_white_box": True},
}


def config_from_artifact(method: str, values: dict[str, Any], *, recognizer: str = "") -> Any:
    """The config a stored artifact was trained with (its ``config`` JSON); fields missing
    from an older artifact take the values its training actually used (``recognizer``: F,
    which older Vec2Face artifacts used directly when differentiable)."""
    stored = dict(values)
    if stored:
        for key, value in _LEGACY.get(method, {}).items():
            stored.setdefault(key, value)
        if method == "vec2face" and "identity_network" not in stored and recognizer:
            stored["identity_network"] = (
                recognizer if differentiable_recognizer(recognizer) else STUDENT
            )
        if stored.get("perceptual_mode") == "add":  # the earlier name of "added"
            stored["perceptual_mode"] = "added"
    return replace(CONFIGS[method](), **config_from_dict(stored))


def train_method(
    method: str,
    config: Any,
    vectors: Tensor,
    images: Tensor,
    *,
    recognizer: str,
    seed: int,
    device: DeviceLike = "cpu",
    checkpoint_dir: Path | None = None,
    progress: bool = False,
    max_steps: int | None = None,
    student_config: vec2face.StudentConfig | None = None,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train ``method`` on (N, D) vectors of F = ``recognizer`` and (N, 3, H, W) images in
    [-1, 1]; returns the result and its provenance notes: ``feature_network`` (the network
    whose gradients trained it, or ``none``), ``white_box`` (whether that was F itself),
    ``allow_white_box``, and for a Vec2Face student its ``student`` config."""
    module = _module(method)
    config = resolve_feature_network(method, config, recognizer=recognizer)
    kwargs: dict[str, Any] = {
        "seed": seed,
        "device": device,
        "checkpoint_dir": checkpoint_dir,
        "progress": progress,
        "max_steps": max_steps,
    }
    notes: dict[str, Any] = {}
    if method == "nbnet":
        kwargs["recognizer"] = recognizer
    if method == "vec2face":
        student_config = student_config or vec2face.StudentConfig()
        kwargs["identity"] = vec2face.identity_network(
            recognizer,
            network=config.identity_network,
            allow_white_box=config.allow_white_box,
            device=resolve_device(device),
            images=images,
            targets=vectors,  # F's vectors of these faces: the student learns from queries
            student_config=student_config,
            seed=seed,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / "student",
            progress=progress,
        )
        if config.identity_network == STUDENT:
            notes["student"] = config_dict(student_config)
    result = module.train(config, vectors, images, **kwargs)
    notes = {
        "feature_network": "none",
        "white_box": False,
        "allow_white_box": bool(getattr(config, "allow_white_box", False)),
        **result.provenance,
        **notes,
    }
    return result, notes


def save(path: Path, result: TrainResult) -> Path:
    """Write ``result``'s network with the owning module's ``save_model``."""
    return _module(result.method).save_model(path, result)


def load(method: str, weights: bytes | str | Path, device: DeviceLike = "cpu") -> nn.Module:
    """A trained network from a weights file (its bytes or path), in eval mode on ``device``."""
    module = _module(method)
    if isinstance(weights, bytes):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "weights.pt"
            path.write_bytes(weights)
            return module.load_model(path, device)
    return module.load_model(weights, device)


def _to_stored_image(image: Tensor) -> np.ndarray:
    """(1, 3, S, S) in [-1, 1] -> (112, 112, 3) uint8, resized if S ≠ 112."""
    if image.shape[-1] != STORED_SIZE:
        image = F.interpolate(
            image, size=(STORED_SIZE, STORED_SIZE), mode="bilinear", antialias=True
        ).clamp(-1, 1)  # (1, 3, 112, 112)
    pixels = ((image[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # (3, 112, 112)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


def _make_run(method: str) -> ReconstructFn:
    module = _module(method)

    def run(
        *,
        target: np.ndarray,
        recognizer: Any,
        artifact: Any,
        config: Any,
        seed: int,
        device: str,
        progress: bool = True,
        checkpoint: Path | None = None,
    ) -> ReconstructionResult:
        """Draw the face of ``target`` with the trained network ``artifact``; one F query."""
        started = time.perf_counter()
        model = artifact if isinstance(artifact, nn.Module) else load(method, artifact, device)
        torch.manual_seed(seed)  # the networks are deterministic; seeded for any future noise
        vector = torch.from_numpy(np.asarray(target, np.float32)[None])  # (1, D)
        drawn = module.reconstruct(model, vector)  # (1, 3, S, S) in [-1, 1], CPU
        image = _to_stored_image(drawn)  # (112, 112, 3) uint8
        forward_start = time.perf_counter()
        final = recognizer.embed(image[None], device=device)[0]  # (D,)
        forward = time.perf_counter() - forward_start
        target_np = np.asarray(target, np.float32)
        norms = max(float(np.linalg.norm(final) * np.linalg.norm(target_np)), 1e-12)
        return ReconstructionResult(
            image=image,
            cosine=float(final @ target_np / norms),
            queries=1,
            seconds=time.perf_counter() - started,
            forward_seconds=forward,
            details={"output_size": int(drawn.shape[-1]), "stored_size": STORED_SIZE},
        )

    run.__name__ = f"{method}_run"
    return run


RUNS: dict[str, ReconstructFn] = {name: _make_run(name) for name in MODULES}
