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

from reconstruction.models import FaceDataset, FaceImage, ReconstructorArtifact, Split
from reconstruction.recognizers.extractor_weights import extractor_artifact_store, local_weights
from reconstruction.storage import config_hash, stored_crops

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


def _extractor_request_check(*, backbone: str, split: str, dataset: str) -> FaceDataset:
    """The source dataset, after checking the backbone and split names."""
    from reconstruction.recognizers.backbones import BACKBONES

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
    return source


def _cuda_check(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExtractorTrainError(f"device {device!r} requested but CUDA is not available")


def _training_faces(
    source: FaceDataset, *, dataset: str, split: str
) -> tuple[list[FaceImage], list[str]]:
    """The split's ok faces (by identity, then path) and its sorted identity names."""
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
    return rows, names


def _run_record(
    *,
    backbone: str,
    values: dict,
    source: FaceDataset,
    split: str,
    rows: list[FaceImage],
    seed: int,
    world: int,
) -> dict:
    """What a run is trained on (written beside its checkpoint; compared on resume)."""
    data_digest = hashlib.sha256()
    for row in rows:
        data_digest.update(f"{row.identity.name}\t{row.relative_path}\t{row.sha256}\n".encode())
    return {
        "backbone": backbone,
        "config": values,
        "dataset": source.name,
        "split": str(split),
        "data_sha256": data_digest.hexdigest(),
        "seed": seed,
        "world_size": world,
    }


def _checkpoint_dir_prepare(
    run_dir: Path, *, run: dict, resume: bool, rank: int, summary: ExtractorTrainSummary
) -> None:
    """Refuse a checkpoint of another or an unasked-for run; record a new run's settings."""
    if (run_dir / "checkpoint.pt").is_file():
        try:
            earlier = json.loads((run_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            earlier = {}
        if not resume:
            raise ExtractorTrainError(
                f"an unfinished training run of {summary.backbone} on "
                f"{summary.dataset}/{summary.split} is "
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


def _extractor_fit(
    *,
    rows: list[FaceImage],
    names: list[str],
    config: Any,
    summary: ExtractorTrainSummary,
    seed: int,
    device: str,
    run_dir: Path,
    stop_at_epoch: int | None,
    progress: bool,
) -> Any:
    """Load the faces and train the backbone with the ArcFace loss; the training result."""
    import torch

    from reconstruction.recognizers.arcface import train_extractor
    from reconstruction.training import CheckpointMismatchError, signed_unit

    per_epoch = summary.steps_per_epoch
    aligned = stored_crops(rows, "aligned", progress=progress, desc="aligned faces")
    images = signed_unit(aligned)  # (N, 3, 112, 112) in [-1, 1]
    del aligned
    label_of = {name: i for i, name in enumerate(names)}
    labels = torch.tensor([label_of[row.identity.name] for row in rows], dtype=torch.long)
    try:
        return train_extractor(
            summary.backbone,
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


@dataclass
class _ExtractorRun:
    """One ArcFace training run as asked: its faces, config, record (beside the checkpoint)
    and key."""

    source: FaceDataset
    rows: list[FaceImage]
    names: list[str]
    config: Any
    run: dict[str, Any]
    run_key: str
    rank: int


def _extractor_run_prepare(
    *,
    dataset: str,
    backbone: str,
    split: str,
    preset: str,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    device: str,
    stop_at_epoch: int | None,
) -> tuple[_ExtractorRun, ExtractorTrainSummary]:
    """Check the request, read the split's faces, build the config and key the run."""
    from reconstruction.training import config_dict, steps_per_epoch, world_info

    source = _extractor_request_check(backbone=backbone, split=split, dataset=dataset)
    config = extractor_config(preset, epochs=epochs, batch_size=batch_size, lr=lr)
    if stop_at_epoch is not None and not 1 <= stop_at_epoch <= config.epochs:
        raise ExtractorTrainError(f"--stop-at-epoch must be between 1 and {config.epochs}")
    _cuda_check(device)
    rows, names = _training_faces(source, dataset=dataset, split=split)
    rank, _, world = world_info()
    values = config_dict(config)
    run = _run_record(
        backbone=backbone,
        values=values,
        source=source,
        split=split,
        rows=rows,
        seed=seed,
        world=world,
    )
    run_key = config_hash(values, **{k: str(v) for k, v in run.items() if k != "config"})
    summary = ExtractorTrainSummary(
        backbone=backbone,
        dataset=source.name,
        split=str(split),
        n_images=len(rows),
        n_identities=len(names),
        epochs=int(config.epochs),
        steps_per_epoch=steps_per_epoch(len(rows), min(config.batch_size * world, len(rows))),
        world_size=world,
        is_main_process=rank == 0,
    )
    return _ExtractorRun(source, rows, names, config, run, run_key, rank), summary


def _finished_run(
    summary: ExtractorTrainSummary, run_key: str, *, out: Path | None, var_dir: Path
) -> bool:
    """Fill the summary from the artifact of a finished run with this key, if there is one."""
    done = ReconstructorArtifact.objects.filter(
        method=summary.backbone, kind=ReconstructorArtifact.Kind.WEIGHTS, metrics__run_key=run_key
    ).first()
    if done is None:
        return False
    summary.artifact = done
    summary.steps = summary.total_steps = done.metrics.get("steps", 0)
    summary.epoch_losses = done.metrics.get("epoch_losses", [])
    summary.weights_path = local_weights(done, out, var_dir)
    return True


def _extractor_run_train(
    job: _ExtractorRun,
    summary: ExtractorTrainSummary,
    *,
    preset: str,
    device: str,
    resume: bool,
    stop_at_epoch: int | None,
    out: Path | None,
    var_dir: Path,
    progress: bool,
    started: float,
) -> None:
    """Train (or resume) in ``summary.checkpoint_dir``; once finished, rank 0 stores the
    weights, writes the local file and removes the checkpoint."""
    run_dir = summary.checkpoint_dir
    _checkpoint_dir_prepare(run_dir, run=job.run, resume=resume, rank=job.rank, summary=summary)
    result = _extractor_fit(
        rows=job.rows,
        names=job.names,
        config=job.config,
        summary=summary,
        seed=job.run["seed"],
        device=device,
        run_dir=run_dir,
        stop_at_epoch=stop_at_epoch,
        progress=progress,
    )
    summary.steps, summary.total_steps = result.steps, result.total_steps
    summary.start_step = result.start_step
    summary.epoch_losses = _epoch_losses(result.history, summary.steps_per_epoch)
    if result.complete and job.rank == 0:
        summary.artifact = extractor_artifact_store(
            result,
            source=job.source,
            run=job.run,
            run_key=job.run_key,
            preset=preset,
            summary=summary,
            started=started,
        )
        summary.weights_path = local_weights(summary.artifact, out, var_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


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

    started = time.perf_counter()
    job, summary = _extractor_run_prepare(
        dataset=dataset,
        backbone=backbone,
        split=split,
        preset=preset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        stop_at_epoch=stop_at_epoch,
    )
    var_dir = Path(settings.VAR_DIR)
    if not _finished_run(summary, job.run_key, out=out, var_dir=var_dir):
        run_dir = Path(checkpoint_dir or var_dir / "checkpoints")
        summary.checkpoint_dir = run_dir / f"extractor-{backbone}-{job.source.name}-{split}"
        _extractor_run_train(
            job,
            summary,
            preset=preset,
            device=device,
            resume=resume,
            stop_at_epoch=stop_at_epoch,
            out=out,
            var_dir=var_dir,
            progress=progress,
            started=started,
        )
    summary.seconds = time.perf_counter() - started
    return summary
