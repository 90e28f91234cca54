"""train_eigenbasis and reconstruct end to end on a few imported LFW identities (tiny presets)."""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.models import Reconstruction, ReconstructorArtifact

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]

# Two identities for the basis (train), two attacked (target): disjoint people.


def test_reconstruct_command_stores_images_and_skips_targets_already_done(
    tiny_lfw, mobileface, tmp_path
):
    out = io.StringIO()
    call_command(
        "train_eigenbasis",
        "--dataset", tiny_lfw, "--method", "pca", "--preset", "tiny", "--no-progress",
        stdout=out,
    )  # fmt: skip
    basis = ReconstructorArtifact.objects.get()
    assert (basis.kind, basis.split, basis.n_images, basis.fitting) == (
        "eigenbasis", "train", 6, "pca"
    )  # fmt: skip
    assert basis.metrics["data_components"] == 5
    assert default_storage.exists(basis.file.name)
    assert f"eigenbasis #{basis.pk}" in out.getvalue()

    args = [
        "reconstruct", "--method", "eigenfaces", "--dataset", tiny_lfw,
        "--recognizer", "mobileface", "--preset", "tiny", "--seed", "1", "--no-progress",
        "--checkpoint-dir", str(tmp_path / "checkpoints"),
    ]  # fmt: skip
    out = io.StringIO()
    call_command(*args, "--basis", str(basis.pk), stdout=out)
    assert "2 reconstructed, 0 already done" in out.getvalue()
    rows = list(Reconstruction.objects.select_related("target__identity"))
    assert {r.target.identity.split for r in rows} == {"target"}
    for row in rows:
        assert row.artifact == basis
        assert (row.method, row.recognizer, row.seed, row.device) == (
            "eigenfaces", "mobileface", 1, "cpu"
        )  # fmt: skip
        assert len(row.recognizer_sha256) == 64
        assert row.queries == 20 * 8 + 1
        assert -1 <= row.cosine <= 1
        assert 0 < row.forward_share <= 1
        with row.image.open("rb") as handle:
            image = np.asarray(Image.open(handle))
        assert image.shape == (112, 112, 3)

    out = io.StringIO()
    call_command(*args, stdout=out)  # the newest basis of the dataset by default
    assert "0 reconstructed, 2 already done" in out.getvalue()
    assert Reconstruction.objects.count() == 2
    assert not any((tmp_path / "checkpoints").glob("*.pt"))  # finished runs leave none


def test_an_eigenfaces_budget_keeps_the_papers_proportions_and_is_recorded(
    tiny_lfw, mobileface, tmp_path
):
    from reconstruction.methods.eigenfaces import EigenfacesConfig

    assert EigenfacesConfig.budget(2000) == EigenfacesConfig()
    short = EigenfacesConfig.budget(400)
    assert (short.iterations, short.restarts, short.restart_iterations) == (400, 2, 100)
    assert (short.batch_size, short.lr_restart, short.lr_refine) == (64, 0.005, 0.001)
    assert EigenfacesConfig.budget(6).restarts * EigenfacesConfig.budget(6).restart_iterations == 3

    call_command(
        "train_eigenbasis",
        "--dataset", tiny_lfw, "--method", "pca", "--preset", "tiny", "--no-progress",
        stdout=io.StringIO(),
    )  # fmt: skip
    out = io.StringIO()
    call_command(
        "reconstruct", "--method", "eigenfaces", "--dataset", tiny_lfw,
        "--recognizer", "mobileface", "--iterations", "4", "--targets", "1", "--no-progress",
        "--checkpoint-dir", str(tmp_path / "checkpoints"), stdout=out,
    )  # fmt: skip
    row = Reconstruction.objects.get()
    assert (row.config["iterations"], row.config["batch_size"]) == (4, 64)
    assert row.queries == 4 * 64 + 1


def test_iterations_is_refused_for_a_parametric_method(tiny_lfw):
    with pytest.raises(CommandError, match="eigenfaces only"):
        call_command(
            "reconstruct", "--method", "naive", "--dataset", tiny_lfw,
            "--recognizer", "mobileface", "--iterations", "4", "--no-progress",
        )  # fmt: skip


def test_reconstruct_without_a_basis_says_what_to_run(tiny_lfw):
    with pytest.raises(CommandError, match="train_eigenbasis"):
        call_command(
            "reconstruct", "--method", "eigenfaces", "--dataset", tiny_lfw,
            "--recognizer", "mobileface", "--preset", "tiny",
        )  # fmt: skip
