"""Long reconstruction jobs as Django tasks: embedding, basis fitting, training, reconstruction,
Metric 1.

Backend: ``django-tasks`` (the backport of Django 6's tasks framework for Django 5.2) with the
``django-tasks-db`` database backend, so that a job enqueued from the admin or a command sits in
the same database as everything else and workers on one or several GPU hosts pull it with
``manage.py db_worker --queue-name reconstruction`` (PostgreSQL: ``SELECT … FOR UPDATE SKIP
LOCKED``, so each job runs once). A worker process runs one job at a time; start one per GPU
(``CUDA_VISIBLE_DEVICES=i manage.py db_worker …``).

Every job calls the service of the same name and inherits its guarantees: embedding computes
only missing vectors, basis fitting returns the existing artifact for the same file, training
resumes from its checkpoints (kept under ``FVR_VAR_DIR/checkpoints/<job key>``) and returns the
finished artifact for the same inputs, reconstruction skips targets already done. A job that
dies (worker killed, host lost) is therefore simply enqueued again. Arguments and results are
JSON (the task framework stores them): names and numbers, never rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django_tasks import task

QUEUE = "reconstruction"

__all__ = [
    "JOBS",
    "QUEUE",
    "checkpoint_dir_for",
    "eigenbasis_train_job",
    "embed_job",
    "reconstruct_job",
    "reconstructor_train_job",
    "topk_evaluate_job",
]


def checkpoint_dir_for(job: str, arguments: dict[str, Any]) -> Path:
    """A stable checkpoint folder per job and arguments, so a re-enqueued job resumes."""
    key = json.dumps({"job": job, **arguments}, sort_keys=True, default=str)
    return Path(settings.VAR_DIR) / "checkpoints" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """A service summary as JSON-ready data."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


@task(queue_name=QUEUE)
def embed_job(*, dataset: str, recognizer: str, device: str = "cpu") -> dict:
    """Embed a dataset's faces with one recognizer (only the missing vectors)."""
    from reconstruction.recognizers.embedding import dataset_embed

    return _plain(
        dataset_embed(dataset=dataset, recognizer=recognizer, device=device, progress=False)
    )


@task(queue_name=QUEUE)
def eigenbasis_train_job(
    *,
    dataset: str,
    method: str = "autoencoder",
    preset: str = "paper",
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Fit the Eigenfaces decoder on the dataset's training split."""
    from reconstruction.services import eigenbasis_train

    artifact = eigenbasis_train(
        dataset=dataset, method=method, preset=preset, seed=seed, device=device, progress=False
    )
    return {"artifact": artifact.pk, "sha256": artifact.sha256}


@task(queue_name=QUEUE)
def reconstructor_train_job(
    *,
    method: str,
    dataset: str,
    recognizer: str,
    preset: str = "paper",
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Train a parametric reconstructor; resumes from this job's checkpoints."""
    from reconstruction.services import reconstructor_train

    arguments = {"method": method, "dataset": dataset, "recognizer": recognizer}
    arguments |= {"preset": preset, "seed": seed}
    summary = reconstructor_train(
        **arguments,
        device=device,
        checkpoint_dir=checkpoint_dir_for("reconstructor_train", arguments),
        progress=False,
    )
    return _plain(summary)


@task(queue_name=QUEUE)
def reconstruct_job(
    *,
    dataset: str,
    method: str,
    recognizer: str,
    targets: int | None = None,
    preset: str = "paper",
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Reconstruct the target split's first images (targets already done are skipped)."""
    from reconstruction.services import reconstruct_targets

    arguments = {"dataset": dataset, "method": method, "recognizer": recognizer}
    arguments |= {"targets": targets, "preset": preset, "seed": seed}
    summary = reconstruct_targets(
        **arguments,
        device=device,
        checkpoint_dir=checkpoint_dir_for("reconstruct", arguments),
        progress=False,
    )
    return _plain(summary)


@task(queue_name=QUEUE)
def topk_evaluate_job(
    *, dataset: str, recognizer: str, trials: int = 10, seed: int = 0, device: str = "cpu"
) -> dict:
    """Metric 1 sweeps for the dataset's stored reconstructions in F' = ``recognizer``."""
    from reconstruction.services import topk_evaluate

    out = Path(settings.VAR_DIR) / "metric1" / f"{dataset}-{recognizer}-seed{seed}"
    run = topk_evaluate(
        dataset=dataset,
        recognizer=recognizer,
        out_dir=out,
        trials=trials,
        seed=seed,
        cache_dir=Path(settings.VAR_DIR) / "cache",
        device=device,
    )
    return {"topk_run": run.pk, "queries": run.queries, "out_dir": str(out)}


# The admin's "launch a job" form: name → (task, the arguments it takes besides the dataset).
JOBS = {
    "embed": (embed_job, ("recognizer", "device")),
    "eigenbasis": (eigenbasis_train_job, ("preset", "seed", "device")),
    "train": (reconstructor_train_job, ("method", "recognizer", "preset", "seed", "device")),
    "reconstruct": (
        reconstruct_job,
        ("method", "recognizer", "targets", "preset", "seed", "device"),
    ),
    "topk": (topk_evaluate_job, ("recognizer", "seed", "device")),
}
