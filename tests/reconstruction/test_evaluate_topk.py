"""evaluate_topk end to end on a few imported LFW identities with tiny Eigenfaces runs."""

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from reconstruction.models import Reconstruction, TopKRun
from reconstruction.recognizers.embedding import dataset_embed
from reconstruction.services import dataset_import, eigenbasis_train, reconstruct_targets

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]

# 3 photos: basis (train); 2 photos: targets (one reconstructed, one left enrolled);
# 1 photo: distractors.
IDENTITIES = {
    "Abdullah_al-Attiyah": 3,
    "Adel_Al-Jubeir": 3,
    "Aaron_Sorkin": 2,
    "Adam_Scott": 2,
    "AJ_Cook": 1,
    "AJ_Lamas": 1,
    "Aaron_Eckhart": 1,
    "Aaron_Guiel": 1,
}


@pytest.fixture
def reconstructed(face_data: Path, tmp_path: Path) -> str:
    from reconstruction.model_store import ModelStoreError
    from reconstruction.recognizers.registry import get_recognizer

    try:
        get_recognizer("mobileface").network("cpu")
    except ModelStoreError as exc:
        pytest.skip(f"mobileface model files unavailable: {exc}")
    root = tmp_path / "lfw-tiny"
    for name, count in IDENTITIES.items():
        (root / name).mkdir(parents=True)
        for path in sorted((face_data / "lfw" / name).glob("*.jpg"))[:count]:
            shutil.copy(path, root / name / path.name)
    dataset_import(
        name="tiny", path=root, splits="train=0.25@3,target=0.25@2,gallery=0.5", progress=False
    )
    dataset_embed(dataset="tiny", recognizer="mobileface", progress=False)
    basis = eigenbasis_train(dataset="tiny", method="pca", preset="tiny", progress=False)
    for seed in (0, 1):
        reconstruct_targets(
            dataset="tiny",
            method="eigenfaces",
            recognizer="mobileface",
            preset="tiny",
            seed=seed,
            artifact_id=basis.pk,
            progress=False,
        )
    return "tiny"


def test_evaluate_topk_writes_tables_figures_and_a_run_and_needs_embeddings(
    reconstructed, tmp_path
):
    assert Reconstruction.objects.count() == 4
    out = io.StringIO()
    call_command(
        "evaluate_topk", "--dataset", reconstructed, "--recognizer", "mobileface",
        "--k", "1,2,3", "--n", "4", "--ns", "2,3,4,5,50", "--k-ref", "2", "--trials", "3",
        "--include-source", "--out", str(tmp_path / "out"),
        "--cache-dir", str(tmp_path / "cache"),
        stdout=out,
    )  # fmt: skip
    run = TopKRun.objects.get()
    text = out.getvalue()
    assert f"TopKRun #{run.pk}" in text
    assert "photo: tpr" in text
    # 4 reconstructions + 2 photos + 2 random faces.
    assert (run.queries, run.recognizer, run.gallery_n, run.k) == (8, "mobileface", 4, 2)
    assert run.methods == ["eigenfaces"]
    assert len(run.recognizer_sha256) == 64
    assert len(run.config["reconstruction_ids"]) == 4
    names = {Path(p).name for p in run.results["files"]}
    assert {"metric1_mobileface.csv", "metric1_mobileface.md"} <= names
    assert {"metric1_mobileface_vs_k.png", "metric1_mobileface_vs_n.svg"} <= names
    assert {"metric1_mobileface_bars.png"} <= names
    for name in names:
        assert (tmp_path / "out" / name).stat().st_size > 0
    rows = run.results["rows"]
    assert {r["variant"] for r in rows} == {"excluded", "included"}
    assert {r["group"] for r in rows} == {"eigenfaces", "photo", "random"}
    assert {r["n"] for r in rows if r["sweep"] == "n"} == {2, 3, 4, 5}  # 50 is too many
    assert "N = 50 skipped" in (tmp_path / "out" / "metric1_mobileface.md").read_text()
    for row in rows:
        assert row["tpr"] + row["fpr"] + row["no_match"] == pytest.approx(1)
    # The photo with its own source enrolled is found at K = 1.
    included_photo = [
        r for r in rows if r["variant"] == "included" and r["group"] == "photo" and r["k"] == 1
    ]
    assert all(r["tpr"] == 1 for r in included_photo)
    assert any((tmp_path / "cache").glob("mobileface-*.npz"))  # reconstruction vectors cached

    # A recognizer whose gallery is not embedded yet: the error says what to run.
    with pytest.raises(CommandError, match="lack a current dlib-resnet embedding"):
        call_command(
            "evaluate_topk", "--dataset", reconstructed, "--recognizer", "dlib-resnet",
            "--out", str(tmp_path),
        )  # fmt: skip
