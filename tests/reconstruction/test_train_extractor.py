"""train_extractor: ArcFace training of a real backbone on a few imported LFW identities (tiny
preset, CPU), epoch checkpoints, --resume, and the trained weights used by `embed`."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from reconstruction.models import (
    Embedding,
    FaceDataset,
    FaceImage,
    Identity,
    ReconstructorArtifact,
)
from reconstruction.recognizers.registry import get_recognizer

pytestmark = pytest.mark.django_db


def train(tmp_path: Path, *extra: str, dataset: str = "tiny") -> str:
    out = io.StringIO()
    call_command(
        "train_extractor", dataset, "--backbone", "arcface-r50", "--preset", "tiny",
        "--no-progress", "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def losses_of(out: str) -> list[float]:
    return [float(v) for v in re.search(r"loss per epoch ([\d., ]+)", out).group(1).split(", ")]


@pytest.mark.facedata
def test_trains_checkpoints_each_epoch_resumes_and_the_weights_embed(tiny_lfw, tmp_path):
    run_dir = tmp_path / "checkpoints" / "extractor-arcface-r50-tiny-train"
    first = train(tmp_path, "--epochs", "3", "--stop-at-epoch", "2")
    assert "stopped after epoch 2/3 on 6 faces of 2 identities (tiny/train)" in first
    early = losses_of(first)
    assert len(early) == 2
    assert early[1] < early[0]  # the ArcFace loss falls from the first epoch to the second
    assert (run_dir / "checkpoint.pt").is_file()
    assert not ReconstructorArtifact.objects.exists()

    with pytest.raises(CommandError, match="pass --resume to continue it"):
        train(tmp_path, "--epochs", "3")
    with pytest.raises(CommandError, match=r"other settings \(differs in: config\)"):
        train(tmp_path, "--epochs", "4", "--resume")

    resumed = train(tmp_path, "--epochs", "3", "--resume")
    assert "Resumed from epoch 2" in resumed
    losses = losses_of(resumed)
    assert losses[:2] == early  # the first two epochs were not run again
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    artifact = ReconstructorArtifact.objects.get()
    assert (artifact.method, artifact.kind, artifact.fitting) == (
        "arcface-r50",
        "weights",
        "arcface-sgd",
    )
    assert artifact.metrics["steps"] == 3  # 6 faces, batch 8: one step per epoch
    assert artifact.n_images == 6
    assert artifact.config["s"] == 64.0
    assert artifact.config["m"] == 0.5
    assert not run_dir.exists()  # a finished run leaves no checkpoint behind
    weights = Path(re.search(r"weights file: (\S+)", resumed).group(1))
    assert weights.is_file()
    assert f"sha256 {artifact.sha256}" in resumed

    again = train(tmp_path, "--epochs", "3", "--resume")
    assert f"weights #{artifact.pk} (already trained)" in again
    assert ReconstructorArtifact.objects.count() == 1

    out = io.StringIO()
    call_command(
        "embed", "tiny", "--recognizer", "arcface-r50", "--weights", str(weights),
        "--no-progress", stdout=out,
    )  # fmt: skip
    assert "8 aligned — 8 new" in out.getvalue()
    rows = Embedding.objects.filter(recognizer="arcface-r50")
    assert rows.count() == 8
    assert {(r.weights_sha256, r.dim) for r in rows} == {(artifact.sha256, 512)}
    recognizer = get_recognizer("arcface-r50", weights)
    row = rows.select_related("image").first()
    with row.image.aligned.open("rb") as handle:
        from reconstruction.faces.alignment import decode_rgb

        pixels = decode_rgb(handle.read())
    fresh = recognizer.embed(pixels[None])[0]
    stored = np.frombuffer(bytes(row.vector), dtype="<f4")
    assert float(fresh @ stored) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
@pytest.mark.facedata
def test_the_efficientnet_backbone_trains_and_its_weights_fit_only_its_recognizer(
    tiny_lfw, tmp_path
):
    out = io.StringIO()
    call_command(
        "train_extractor", "tiny", "--backbone", "arcface-effnet", "--preset", "tiny",
        "--epochs", "1", "--no-progress", "--out", str(tmp_path / "effnet.pth"),
        "--checkpoint-dir", str(tmp_path / "checkpoints"), stdout=out,
    )  # fmt: skip
    assert "arcface-effnet weights" in out.getvalue()
    assert (tmp_path / "effnet.pth").is_file()
    with pytest.raises(CommandError, match="holds arcface-effnet weights, not arcface-r50"):
        call_command(
            "embed", "tiny", "--recognizer", "arcface-r50",
            "--weights", str(tmp_path / "effnet.pth"), "--no-progress", stdout=io.StringIO(),
        )  # fmt: skip


@pytest.mark.facedata
def test_a_split_without_two_identities_is_refused(tiny_lfw, tmp_path):
    with pytest.raises(CommandError, match=r"0 aligned faces of 0 identities.*at least 2"):
        train(tmp_path, "--split", "gallery")


def _one_identity_dataset() -> None:
    dataset = FaceDataset.objects.create(name="solo", root="/nonexistent")
    identity = Identity.objects.create(dataset=dataset, name="Only_One", split="train")
    for i in range(3):
        FaceImage.objects.create(
            dataset=dataset,
            identity=identity,
            relative_path=f"Only_One/{i}.jpg",
            sha256="0" * 64,
            status="ok",
            landmarks=[[0, 0]] * 5,
            aligned=f"faces/solo/{i}.png",
            crop160=f"faces/solo/{i}-160.png",
        )


def test_bad_input_gets_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"unknown dataset 'nowhere'.*import_faces"):
        train(tmp_path, dataset="nowhere")
    with pytest.raises(CommandError, match="invalid choice: 'arcface-r18'"):
        call_command("train_extractor", "nowhere", "--backbone", "arcface-r18")
    _one_identity_dataset()
    with pytest.raises(CommandError, match="3 aligned faces of 1 identities"):
        train(tmp_path, dataset="solo")
    with pytest.raises(CommandError, match="--batch-size must be at least 2"):
        train(tmp_path, "--batch-size", "1", dataset="solo")
    with pytest.raises(CommandError, match="--stop-at-epoch must be between 1 and 2"):
        train(tmp_path, "--stop-at-epoch", "3", dataset="solo")


def test_arcface_recognizers_need_a_weights_file(tmp_path):
    with pytest.raises(KeyError, match="needs a weights file"):
        get_recognizer("arcface-r50")
    with pytest.raises(FileNotFoundError, match="train_extractor"):
        get_recognizer("arcface-effnet", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="fixed weights"):
        get_recognizer("mobileface", tmp_path / "missing.pth")
