"""train_reconstructor keeps F's gradients out of NBNet's and Vec2Face's losses unless allowed
(the paper's black-box threat model), and records the feature network used (tiny presets,
F = mobileface, a few imported LFW faces, CPU)."""

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from reconstruction.models import Reconstruction, ReconstructorArtifact

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]


def train(tmp_path: Path, method: str, *extra: str) -> str:
    out = io.StringIO()
    call_command(
        "train_reconstructor", "--method", method, "--dataset", "tiny",
        "--recognizer", "mobileface", "--preset", "tiny", "--no-progress",
        "--checkpoint-dir", str(tmp_path / "checkpoints"), *extra,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


def reconstruct(tmp_path: Path, method: str) -> None:
    call_command(
        "reconstruct", "--method", method, "--dataset", "tiny", "--recognizer", "mobileface",
        "--no-progress", "--checkpoint-dir", str(tmp_path / "checkpoints"),
        stdout=io.StringIO(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "network"),
    [("nbnet", "recognizer:faceres"), ("vec2face", "student-of:mobileface")],
)
def test_the_default_feature_network_is_not_f_and_is_recorded(
    tiny_lfw, mobileface, tmp_path, method, network
):
    output = train(tmp_path, method)
    artifact = ReconstructorArtifact.objects.get()
    assert f"feature network {network}" in output
    assert "white-box" not in output
    assert artifact.metrics["feature_network"] == network
    assert artifact.metrics["white_box"] is False
    assert artifact.metrics["allow_white_box"] is False
    assert artifact.config["allow_white_box"] is False
    if method == "nbnet":  # the automatic choice is stored as a name, and the fresh phase
        assert artifact.config["perceptual_recognizer"] == "faceres"
        assert artifact.config["perceptual_restart"] is True
    else:
        assert artifact.config["identity_network"] == "student"
        assert artifact.metrics["student"]["layers"] == [1, 1]  # the tiny preset's student

    reconstruct(tmp_path, method)
    for row in Reconstruction.objects.all():
        assert row.details["feature_network"] == network
        assert row.details["white_box"] is False
        assert row.details["allow_white_box"] is False


@pytest.mark.parametrize("method", ["nbnet", "vec2face"])
def test_f_as_the_feature_network_is_refused_without_allow_white_box(tiny_lfw, tmp_path, method):
    with pytest.raises(CommandError, match="'mobileface' is F itself") as refused:
        train(tmp_path, method, "--feature-network", "mobileface")
    message = str(refused.value)
    assert "black-box" in message
    assert "--allow-white-box" in message
    assert "--feature-network" in message  # what to use instead
    assert not ReconstructorArtifact.objects.exists()


def test_allow_white_box_trains_through_f_and_says_so(tiny_lfw, mobileface, tmp_path):
    output = train(
        tmp_path, "nbnet", "--feature-network", "mobileface", "--allow-white-box",
        "--perceptual-mode", "added",
    )  # fmt: skip
    artifact = ReconstructorArtifact.objects.get()
    assert "feature network recognizer:mobileface (F itself: white-box" in output
    assert (artifact.metrics["white_box"], artifact.metrics["allow_white_box"]) == (True, True)
    assert artifact.config["perceptual_mode"] == "added"
    reconstruct(tmp_path, "nbnet")
    row = Reconstruction.objects.first()
    assert (row.details["white_box"], row.details["allow_white_box"]) == (True, True)
    assert row.config["allow_white_box"] is True


def test_options_that_do_not_apply_or_name_nothing_fail_clearly(tiny_lfw, tmp_path):
    with pytest.raises(CommandError, match="perceptual_mode applies to nbnet only"):
        train(tmp_path, "naive", "--perceptual-mode", "added")
    with pytest.raises(CommandError, match="naive has no feature network"):
        train(tmp_path, "naive", "--feature-network", "faceres")
    with pytest.raises(CommandError, match="unknown recognizer 'nope'"):
        train(tmp_path, "nbnet", "--feature-network", "nope")
    with pytest.raises(CommandError, match="no VGG-19 weights file"):
        train(tmp_path, "nbnet", "--vgg19-weights", str(tmp_path / "missing.pth"))
    with pytest.raises(CommandError, match="invalid choice: 'add'"):
        train(tmp_path, "nbnet", "--perceptual-mode", "add")
