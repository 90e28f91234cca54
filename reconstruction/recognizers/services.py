"""Face extractors: ArcFace training of the torch backbones on an imported dataset's faces."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconstruction.methods.services import (
    _artifact_store,
    _config_hash,
    _signed_unit,
    _stored_crops,
)
from reconstruction.models import FaceDataset, FaceImage, ReconstructorArtifact, Split

EXTRACTOR_PRESETS = ("paper", "tiny")
RUN_FILE = "run.json"  # beside the checkpoint: what the unfinished run was trained on


class ExtractorTrainError(ValueError):
    """An extractor cannot be trained as asked; the message says what to change."""


@dataclass
class ExtractorTrainSummary:
    """What `extractor_train` did; ``artifact`` is None while training is unfinished."""

    backbone: str
    dataset: str
    split: str
    n_images: int
    n_identities: int
    epochs: int
    steps_per_epoch: int
    artifact: ReconstructorArtifact | None = None
    created: bool = False
    weights_path: Path | None = None
    steps: int = 0
    total_steps: int = 0
    start_step: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # mean ArcFace loss per epoch
    checkpoint_dir: Path | None = None
    world_size: int = 1
    is_main_process: bool = True
    seconds: float = 0.0

    @property
    def epoch(self) -> int:
        """Epochs finished so far."""
        return self.steps // self.steps_per_epoch

    @property
    def start_epoch(self) -> int:
        """Epochs already done when this call started (> 0 when it resumed)."""
        return self.start_step // self.steps_per_epoch


def extractor_config(
    preset: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
) -> Any:
    """The ArcFace training config of ``preset`` with the given overrides.

    paper: insightface's ms1mv3_r50 settings (SGD lr 0.1, batch 128 per process, 20 epochs).
    tiny: the real backbone at 112×112 for a CPU test — batch 8, 2 epochs, lr 0.01 (a batch
    this small does not train stably at lr 0.1).
    """
    from reconstruction.recognizers.arcface import ExtractorConfig

    if preset not in EXTRACTOR_PRESETS:
        raise ExtractorTrainError(
            f"unknown preset {preset!r}: use {' or '.join(EXTRACTOR_PRESETS)}"
        )
    config = ExtractorConfig()
    if preset == "tiny":
        config = replace(config, batch_size=8, epochs=2, lr=0.01)
    if epochs is not None:
        if epochs < 1:
            raise ExtractorTrainError("--epochs must be at least 1")
        config = replace(config, epochs=epochs)
    if batch_size is not None:
        if batch_size < 2:
            raise ExtractorTrainError("--batch-size must be at least 2 (batch normalisation)")
        config = replace(config, batch_size=batch_size)
    if lr is not None:
        if not lr > 0:
            raise ExtractorTrainError("--lr must be positive")
        config = replace(config, lr=lr)
    return config


def _epoch_losses(history: list[dict[str, float]], per_epoch: int) -> list[float]:
    """Mean ArcFace loss of each epoch from the logged windows (a window is counted in the
    epoch it ends in: exact for epochs of ≤ 50 steps, within 50 steps otherwise)."""
    sums: dict[int, list[float]] = {}
    for entry in history:
        epoch = math.ceil(entry["step"] / per_epoch)
        sums.setdefault(epoch, []).append(entry["arcface"])
    return [sum(v) / len(v) for _, v in sorted(sums.items())]


def _weights_write(path: Path, data: bytes) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _local_weights(artifact: ReconstructorArtifact, out: Path | None, var_dir: Path) -> Path:
    """A local file with the artifact's weights: ``out``, else the stored file when storage is
    local, else a copy under ``var_dir/extractors``."""
    if out is None:
        try:
            return Path(artifact.file.path)
        except NotImplementedError:  # remote storage (S3): no local path
            name = f"{artifact.method}-{artifact.dataset.name}-{artifact.sha256[:12]}.pth"
            out = var_dir / "extractors" / name
    out = Path(out).expanduser()
    if out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == artifact.sha256:
        return out
    with artifact.file.open("rb") as handle:
        return _weights_write(out, handle.read())


def extractor_train(
    *,
    dataset: str,
    backbone: str,
    split: str = Split.TRAIN,
    preset: str = "paper",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: Path | None = None,
    resume: bool = False,
    stop_at_epoch: int | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> ExtractorTrainSummary:
    """Train ``backbone`` with the ArcFace loss on a split's aligned 112×112 faces (one class
    per identity); checkpoint every epoch; store the weights as a ReconstructorArtifact
    (method = the backbone, kind = weights, with its SHA-256) and as a local file for
    ``embed --weights``.

    Idempotent: a finished run with the same backbone, config, faces, seed and number of
    processes returns its artifact. An unfinished run (interrupted, or ``stop_at_epoch``) keeps
    its checkpoint; ``resume=True`` continues it from the last finished epoch, and without it
    an existing checkpoint is refused rather than overwritten. Under ``torchrun`` every process
    trains its share of each batch and only rank 0 writes files and rows.
    """
    from django.conf import settings

    from reconstruction.recognizers.arcface import BACKBONES, train_extractor
    from reconstruction.training import (
        CheckpointMismatchError,
        config_dict,
        steps_per_epoch,
        world_info,
    )

    started = time.perf_counter()
    if backbone not in BACKBONES:
        raise ExtractorTrainError(
            f"unknown backbone {backbone!r}; use {' or '.join(sorted(BACKBONES))}"
        )
    if split not in Split.values:
        raise ExtractorTrainError(f"unknown split {split!r}; use {', '.join(Split.values)}")
    source = FaceDataset.objects.filter(name=dataset).first()
    if source is None:
        known = ", ".join(FaceDataset.objects.values_list("name", flat=True)) or "none"
        raise ExtractorTrainError(
            f"unknown dataset {dataset!r} (imported: {known}); run `manage.py import_faces` first"
        )
    config = extractor_config(preset, epochs=epochs, batch_size=batch_size, lr=lr)
    if stop_at_epoch is not None and not 1 <= stop_at_epoch <= config.epochs:
        raise ExtractorTrainError(f"--stop-at-epoch must be between 1 and {config.epochs}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExtractorTrainError(f"device {device!r} requested but CUDA is not available")
    rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split=split)
        .select_related("identity")
        .order_by("identity__name", "relative_path")
    )
    names = sorted({row.identity.name for row in rows})
    if len(names) < 2 or len(rows) < 2:
        raise ExtractorTrainError(
            f"split {split!r} of {dataset!r} has {len(rows)} aligned faces of {len(names)} "
            "identities; ArcFace training needs at least 2 identities (one class each): "
            "import more faces or pick another --split"
        )
    rank, _, world = world_info()
    per_epoch = steps_per_epoch(len(rows), min(config.batch_size * world, len(rows)))
    values = config_dict(config)
    data_digest = hashlib.sha256()
    for row in rows:
        data_digest.update(f"{row.identity.name}\t{row.relative_path}\t{row.sha256}\n".encode())
    run = {
        "backbone": backbone,
        "config": values,
        "dataset": source.name,
        "split": str(split),
        "data_sha256": data_digest.hexdigest(),
        "seed": seed,
        "world_size": world,
    }
    run_key = _config_hash(values, **{k: str(v) for k, v in run.items() if k != "config"})
    summary = ExtractorTrainSummary(
        backbone=backbone,
        dataset=source.name,
        split=str(split),
        n_images=len(rows),
        n_identities=len(names),
        epochs=int(config.epochs),
        steps_per_epoch=per_epoch,
        world_size=world,
        is_main_process=rank == 0,
    )
    var_dir = Path(settings.VAR_DIR)
    done = ReconstructorArtifact.objects.filter(
        method=backbone, kind=ReconstructorArtifact.Kind.WEIGHTS, metrics__run_key=run_key
    ).first()
    if done is not None:
        summary.artifact = done
        summary.steps = summary.total_steps = done.metrics.get("steps", 0)
        summary.epoch_losses = done.metrics.get("epoch_losses", [])
        summary.weights_path = _local_weights(done, out, var_dir)
        summary.seconds = time.perf_counter() - started
        return summary

    run_dir = Path(checkpoint_dir or var_dir / "checkpoints")
    run_dir = run_dir / f"extractor-{backbone}-{source.name}-{split}"
    summary.checkpoint_dir = run_dir
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file():
        try:
            earlier = json.loads((run_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            earlier = {}
        if not resume:
            raise ExtractorTrainError(
                f"an unfinished training run of {backbone} on {source.name}/{split} is "
                f"checkpointed in {run_dir}: pass --resume to continue it, or delete that "
                "folder to start again"
            )
        changed = sorted(k for k in run if earlier.get(k) != run[k])
        if changed:
            raise ExtractorTrainError(
                f"the checkpoint in {run_dir} was trained with other settings (differs in: "
                f"{', '.join(changed)}); resume with the same ones, or delete that folder"
            )
    elif rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_FILE).write_text(json.dumps(run, indent=1, sort_keys=True))

    aligned = _stored_crops(rows, "aligned", progress=progress, desc="aligned faces")
    images = _signed_unit(aligned)  # (N, 3, 112, 112) in [-1, 1]
    del aligned
    import torch

    label_of = {name: i for i, name in enumerate(names)}
    labels = torch.tensor([label_of[row.identity.name] for row in rows], dtype=torch.long)
    try:
        result = train_extractor(
            backbone,
            images,
            labels,
            config,
            seed=seed,
            device=device,
            checkpoint_dir=run_dir,
            progress=progress,
            max_steps=None if stop_at_epoch is None else stop_at_epoch * per_epoch,
            checkpoint_every=per_epoch,
            log_every=min(per_epoch, 50),  # windows end on epoch bounds up to 50 steps
        )
    except CheckpointMismatchError as exc:
        raise ExtractorTrainError(f"{exc}: resume with the same settings") from exc
    summary.steps, summary.total_steps = result.steps, result.total_steps
    summary.start_step = result.start_step
    summary.epoch_losses = _epoch_losses(result.history, per_epoch)
    if not result.complete or rank != 0:
        summary.seconds = time.perf_counter() - started
        return summary

    import io

    buffer = io.BytesIO()
    torch.save(
        {
            "backbone": backbone,
            "state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
            "config": values,
            "meta": {
                "dataset": source.name,
                "split": str(split),
                "identities": len(names),
                "images": len(rows),
                "seed": seed,
            },
        },
        buffer,
    )
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    artifact = ReconstructorArtifact.objects.filter(
        method=backbone, kind=ReconstructorArtifact.Kind.WEIGHTS, sha256=digest
    ).first()
    if artifact is None:
        artifact = ReconstructorArtifact(
            method=backbone,
            kind=ReconstructorArtifact.Kind.WEIGHTS,
            dataset=source,
            split=split,
            n_images=len(rows),
            fitting="arcface-sgd",
            config=values,
            seed=seed,
            device=result.device,
            metrics={
                "run_key": run_key,
                "preset": preset,
                "role": "face extractor (recognizer), not a reconstructor",
                "data_sha256": data_digest.hexdigest(),
                "dataset_fingerprint": source.fingerprint,
                "identities": len(names),
                "steps": result.steps,
                "steps_per_epoch": per_epoch,
                "world_size": world,
                "epoch_losses": summary.epoch_losses,
                "train_seconds": result.wall_s,
            },
            sha256=digest,
            seconds=time.perf_counter() - started,
        )
        _artifact_store(artifact, f"{backbone}.pth", data)
        summary.created = True
    summary.artifact = artifact
    summary.weights_path = _local_weights(artifact, out, var_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary
