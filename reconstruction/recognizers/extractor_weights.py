"""A trained face extractor's weights: the ReconstructorArtifact row and file, and a local copy.

``extractor_artifact_store`` stores a finished ArcFace run's state dict (with its config and
training data) once per file content; ``local_weights`` gives ``embed --weights`` a file.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruction.models import FaceDataset, ReconstructorArtifact
from reconstruction.storage import artifact_store

if TYPE_CHECKING:
    from reconstruction.recognizers.services import ExtractorTrainSummary

__all__ = ["extractor_artifact_store", "local_weights"]


def _weights_write(path: Path, data: bytes) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def local_weights(artifact: ReconstructorArtifact, out: Path | None, var_dir: Path) -> Path:
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


def _weights_bytes(result: Any, *, run: dict, summary: ExtractorTrainSummary) -> bytes:
    """The trained backbone's state dict with its config and data, as a torch.save file."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(
        {
            "backbone": summary.backbone,
            "state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
            "config": run["config"],
            "meta": {
                "dataset": summary.dataset,
                "split": summary.split,
                "identities": summary.n_identities,
                "images": summary.n_images,
                "seed": run["seed"],
            },
        },
        buffer,
    )
    return buffer.getvalue()


def extractor_artifact_store(
    result: Any,
    *,
    source: FaceDataset,
    run: dict,
    run_key: str,
    preset: str,
    summary: ExtractorTrainSummary,
    started: float,
) -> ReconstructorArtifact:
    """The weights artifact of a finished run: an existing one with the same bytes, or new."""
    data = _weights_bytes(result, run=run, summary=summary)
    digest = hashlib.sha256(data).hexdigest()
    artifact = ReconstructorArtifact.objects.filter(
        method=summary.backbone, kind=ReconstructorArtifact.Kind.WEIGHTS, sha256=digest
    ).first()
    if artifact is not None:
        return artifact
    artifact = ReconstructorArtifact(
        method=summary.backbone,
        kind=ReconstructorArtifact.Kind.WEIGHTS,
        dataset=source,
        split=summary.split,
        n_images=summary.n_images,
        fitting="arcface-sgd",
        config=run["config"],
        seed=run["seed"],
        device=result.device,
        metrics={
            "run_key": run_key,
            "preset": preset,
            "role": "face extractor (recognizer), not a reconstructor",
            "data_sha256": run["data_sha256"],
            "dataset_fingerprint": source.fingerprint,
            "identities": summary.n_identities,
            "steps": result.steps,
            "steps_per_epoch": summary.steps_per_epoch,
            "world_size": summary.world_size,
            "epoch_losses": summary.epoch_losses,
            "train_seconds": result.wall_s,
        },
        sha256=digest,
        seconds=time.perf_counter() - started,
    )
    artifact_store(artifact, f"{summary.backbone}.pth", data)
    summary.created = True
    return artifact
