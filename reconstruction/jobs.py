"""Enqueue long reconstruction jobs (``reconstruction/tasks.py``) for a worker to run."""

from __future__ import annotations

from typing import Any

from reconstruction.models import FaceDataset


class JobError(ValueError):
    """A job cannot be enqueued as asked; the message says what to change."""


def job_enqueue(*, job: str, dataset: str, **options: Any) -> str:
    """Validate a job's arguments and put it on the reconstruction queue; return the task id."""
    from reconstruction.tasks import JOBS

    if job not in JOBS:
        raise JobError(f"unknown job {job!r}; use one of {', '.join(JOBS)}")
    if not FaceDataset.objects.filter(name=dataset, imported_at__isnull=False).exists():
        raise JobError(f"no imported dataset {dataset!r}: run `manage.py import_faces` first")
    task, accepted = JOBS[job]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise JobError(f"job {job!r} takes no {', '.join(unknown)}")
    arguments = {name: value for name, value in options.items() if value not in (None, "")}
    if job in ("train", "reconstruct") and not arguments.get("method"):
        raise JobError(f"job {job!r} needs a method")
    if job != "eigenbasis" and not arguments.get("recognizer"):
        raise JobError(f"job {job!r} needs a recognizer")
    if job == "train" and arguments["method"] == "eigenfaces":
        raise JobError("Eigenfaces is not trained: enqueue the 'eigenbasis' job instead")
    result = task.enqueue(dataset=dataset, **arguments)
    return str(result.id)
