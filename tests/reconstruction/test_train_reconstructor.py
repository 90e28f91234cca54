"""train_reconstructor and reconstruct with NBNet, Naive and Vec2Face on a few imported LFW
identities (tiny presets, F = mobileface, CPU)."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.models import Embedding, FaceImage, Reconstruction, ReconstructorArtifact
from reconstruction.services import EMBEDDED_ALIGNED_INPUT

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]

# Two identities to train on, two attacked (target): disjoint people.
OUTPUT_SIZES = {"nbnet": 20, "naive": 14, "vec2face": 8}  # tiny presets, stored at 112


def train(tmp_path: Path, method: str, *extra: str, dataset: str = "tiny") -> str:
    out = io.StringIO()
    call_command(
        "train_reconstructor", "--method", method, "--dataset", dataset,
        "--recognizer", "mobileface", "--preset", "tiny", "--no-progress",
        "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def reconstruct(tmp_path: Path, method: str, *extra: str) -> str:
    out = io.StringIO()
    call_command(
        "reconstruct", "--method", method, "--dataset", "tiny", "--recognizer", "mobileface",
        "--seed", "1", "--no-progress", "--checkpoint-dir", str(tmp_path / "checkpoints"),
        *extra, stdout=out,
    )  # fmt: skip
    return out.getvalue()


@pytest.mark.parametrize("method", ["nbnet", "naive", "vec2face"])
def test_trained_weights_reconstruct_every_target_once(tiny_lfw, mobileface, tmp_path, method):
    output = train(tmp_path, method)
    artifact = ReconstructorArtifact.objects.get()
    assert f"{method} weights #{artifact.pk} (trained)" in output
    assert "0 stored, 6 computed" in output
    assert (artifact.method, artifact.kind, artifact.split, artifact.n_images) == (
        method, "weights", "train", 6
    )  # fmt: skip
    assert (artifact.recognizer, artifact.seed, artifact.device) == ("mobileface", 0, "cpu")
    assert len(artifact.recognizer_sha256) == 64
    assert artifact.metrics["crop"] == ("crop160" if method == "nbnet" else "aligned")
    assert artifact.metrics["steps"] >= 1
    assert artifact.metrics["dataset_fingerprint"] == artifact.dataset.fingerprint
    assert default_storage.exists(artifact.file.name)
    assert not any((tmp_path / "checkpoints").iterdir())  # a finished run leaves no state

    assert "(already trained)" in train(tmp_path, method)
    assert ReconstructorArtifact.objects.count() == 1

    assert "2 reconstructed, 0 already done" in reconstruct(tmp_path, method)
    rows = list(Reconstruction.objects.select_related("target__identity"))
    assert {r.target.identity.split for r in rows} == {"target"}
    for row in rows:
        assert (row.artifact, row.method, row.recognizer, row.seed) == (
            artifact, method, "mobileface", 1
        )  # fmt: skip
        assert row.config == artifact.config  # the training config, not the preset's
        assert row.queries == 1
        assert -1 <= row.cosine <= 1
        assert row.details["output_size"] == OUTPUT_SIZES[method]
        with row.image.open("rb") as handle:
            assert np.asarray(Image.open(handle)).shape == (112, 112, 3)

    output = reconstruct(tmp_path, method, "--artifact", str(artifact.pk))
    assert "0 reconstructed, 2 already done" in output
    assert Reconstruction.objects.count() == 2

    other = "naive" if method != "naive" else "nbnet"
    with pytest.raises(CommandError, match=f"belongs to '{method}', not '{other}'"):
        reconstruct(tmp_path, other, "--artifact", str(artifact.pk))


def test_max_steps_stops_and_the_next_run_resumes_with_stored_vectors(
    tiny_lfw, mobileface, tmp_path
):
    from reconstruction.recognizers.registry import get_recognizer

    engine = get_recognizer("mobileface")
    images = list(FaceImage.objects.filter(identity__split="train"))
    for image in images:
        with image.aligned.open("rb") as handle:
            vector = engine.embed(np.asarray(Image.open(handle))[None])[0]
        Embedding.objects.create(
            image=image,
            recognizer="mobileface",
            weights_sha256=engine.weights_sha256,
            preprocessing=EMBEDDED_ALIGNED_INPUT + engine.preprocessing,
            source_sha256=image.sha256,
            dim=len(vector),
            vector=vector.astype("<f4").tobytes(),
        )

    output = train(tmp_path, "naive", "--max-steps", "1")
    assert "stopped at step 1/3" in output
    assert not ReconstructorArtifact.objects.exists()

    output = train(tmp_path, "naive")
    assert "(trained)" in output
    assert "6 stored, 0 computed" in output
    assert ReconstructorArtifact.objects.get().metrics["steps"] == 3


def test_unknown_method_dataset_or_empty_split_fail_clearly(tiny_lfw, tmp_path):
    with pytest.raises(CommandError, match="invalid choice: 'dcgan'"):
        train(tmp_path, "dcgan")
    with pytest.raises(CommandError, match="No dataset 'nope'"):
        train(tmp_path, "naive", dataset="nope")
    with pytest.raises(CommandError, match="no aligned faces in split 'gallery'"):
        train(tmp_path, "naive", "--split", "gallery")
    with pytest.raises(CommandError, match="train_reconstructor --method naive"):
        reconstruct(tmp_path, "naive")
    with pytest.raises(CommandError, match="no artifact #999"):
        reconstruct(tmp_path, "naive", "--artifact", "999")
