"""train_eigenbasis and reconstruct end to end on a few imported LFW identities (tiny presets)."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.models import Reconstruction, ReconstructorArtifact
from reconstruction.services import dataset_import

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]

# Two identities for the basis (train), two attacked (target): disjoint people.
IDENTITIES = {"Abdullah_Gul": 3, "Adrien_Brody": 3, "Alejandro_Toledo": 1, "Alvaro_Uribe": 1}


@pytest.fixture
def mobileface() -> None:
    from reconstruction.model_store import ModelStoreError
    from reconstruction.recognizers import get_recognizer

    try:
        get_recognizer("mobileface").network("cpu")
    except ModelStoreError as exc:
        pytest.skip(f"mobileface model files unavailable: {exc}")


@pytest.fixture
def tiny_lfw(face_data: Path, tmp_path: Path) -> str:
    root = tmp_path / "lfw-tiny"
    for name, count in IDENTITIES.items():
        (root / name).mkdir(parents=True)
        for path in sorted((face_data / "lfw" / name).glob("*.jpg"))[:count]:
            shutil.copy(path, root / name / path.name)
    # Identities with 3 photos go to train, those with 1 to target (the @N rule fills first).
    dataset_import(name="tiny", path=root, splits="train=0.5@3,target=0.5", progress=False)
    return "tiny"


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


def test_reconstruct_without_a_basis_says_what_to_run(tiny_lfw):
    with pytest.raises(CommandError, match="train_eigenbasis"):
        call_command(
            "reconstruct", "--method", "eigenfaces", "--dataset", tiny_lfw,
            "--recognizer", "mobileface", "--preset", "tiny",
        )  # fmt: skip
