import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from reconstruction.metric1.gallery import gallery_from_embeddings
from reconstruction.model_store import ModelStoreError, tfjs_model_path
from reconstruction.models import Embedding, FaceDataset, FaceImage
from reconstruction.recognizers.embedding import dataset_embed
from reconstruction.recognizers.registry import get_recognizer
from reconstruction.services import dataset_import

pytestmark = [pytest.mark.django_db, pytest.mark.facedata]

PEOPLE = {"Aaron_Sorkin": 2, "Abdullah_Gul": 2, "Abdullah_al-Attiyah": 2}


@pytest.fixture
def tiny(face_data: Path, tmp_path: Path) -> Path:
    """Six LFW photos of three people, copied so a test may change one; imported as 'tiny'."""
    root = tmp_path / "faces"
    for person, count in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for photo in sorted((face_data / "lfw" / person).glob("*.jpg"))[:count]:
            shutil.copy(photo, root / person / photo.name)
    summary = dataset_import(name="tiny", path=root, progress=False)
    assert summary.ok == 6, summary.no_face
    return root


def embed(recognizer: str) -> str:
    out = io.StringIO()
    call_command("embed", "tiny", "--recognizer", recognizer, "--no-progress", stdout=out)
    return out.getvalue()


def test_embed_dlib_stores_unit_vectors_with_provenance_and_reruns_compute_nothing(
    tiny: Path,
) -> None:
    output = embed("dlib-resnet")
    assert "6 new, 0 recomputed, 0 unchanged, 0 failed" in output
    assert "images/s" in output
    recognizer = get_recognizer("dlib-resnet")
    rows = list(Embedding.objects.filter(recognizer="dlib-resnet"))
    assert len(rows) == 6
    for row in rows:
        vector = np.frombuffer(row.vector, dtype="<f4")
        assert row.dim == vector.size == 128
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert row.weights_sha256 == recognizer.weights_sha256
        assert row.source_sha256 == row.image.sha256
        assert row.dataset_fingerprint == row.image.dataset.fingerprint != ""
        assert "get_face_chip" in row.preprocessing
        assert len(row.preprocessing) <= 500
        assert not row.is_stale
    assert "0 new, 0 recomputed, 6 unchanged" in embed("dlib-resnet")

    # One image per person in the gallery; the other photo of each person finds its owner.
    gallery = gallery_from_embeddings(dataset="tiny", recognizer="dlib-resnet", per_identity=1)
    assert len(gallery) == 3
    assert gallery.description["fingerprint"] == FaceDataset.objects.get().fingerprint
    probes = FaceImage.objects.exclude(id__in=gallery.image_ids.tolist()).order_by("id")
    vectors = np.stack(
        [
            np.frombuffer(Embedding.objects.get(image=p, recognizer="dlib-resnet").vector, "<f4")
            for p in probes
        ]
    )
    top = gallery.search(vectors, k=1)
    assert top.labels[:, 0].tolist() == [p.identity_id for p in probes]
    drawn = gallery_from_embeddings(dataset="tiny", recognizer="dlib-resnet", identities=2, seed=1)
    assert len(set(drawn.labels.tolist())) == 2
    assert len(drawn) == 4


def test_a_changed_photo_makes_its_embedding_stale_and_only_it_is_recomputed(tiny: Path) -> None:
    embed("dlib-resnet")
    photo = sorted((tiny / "Abdullah_Gul").glob("*.jpg"))[0]
    with Image.open(photo) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo, "JPEG", quality=90)

    # Before re-import the photo no longer matches its row: listed, not embedded.
    FaceImage.objects.filter(relative_path__endswith=photo.name).update(sha256="0" * 64)
    summary = dataset_embed(dataset="tiny", recognizer="dlib-resnet", progress=False)
    assert [reason for _, reason in summary.failed] == [
        "source photo changed since import: re-run import_faces"
    ]

    dataset_import(name="tiny", path=tiny, progress=False)
    changed = Embedding.objects.get(image__relative_path__endswith=photo.name)
    assert changed.is_stale
    with pytest.raises(ValueError, match="lack a current dlib-resnet embedding"):
        gallery_from_embeddings(dataset="tiny", recognizer="dlib-resnet")
    summary = dataset_embed(dataset="tiny", recognizer="dlib-resnet", progress=False)
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 5)
    assert not Embedding.objects.get(pk=changed.pk).is_stale
    assert Embedding.objects.count() == 6

    # A preprocessing change is an input change too.
    Embedding.objects.filter(pk=changed.pk).update(preprocessing="older preprocessing")
    summary = dataset_embed(dataset="tiny", recognizer="dlib-resnet", progress=False)
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 5)


def test_embed_mobileface_feeds_the_aligned_crop(tiny: Path) -> None:
    try:
        tfjs_model_path("mobileface")
    except ModelStoreError as error:
        pytest.skip(f"mobileface model files not available (npm absent or offline?): {error}")
    assert "6 new, 0 recomputed" in embed("mobileface")
    assert "0 new, 0 recomputed, 6 unchanged" in embed("mobileface")
    row = Embedding.objects.filter(recognizer="mobileface").first()
    assert row.dim == 256
    assert row.preprocessing.startswith("input: stored 112x112 ArcFace crop")
    # Same vectors as embedding the stored crop directly.
    pixels = np.array(Image.open(row.image.aligned.open("rb")).convert("RGB"))
    expected = get_recognizer("mobileface").embed(pixels[None])[0]
    assert np.allclose(np.frombuffer(row.vector, "<f4"), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "--recognizer", "dlib-resnet"], "unknown dataset 'nowhere'"),
        (["empty", "--recognizer", "eigenvoice"], "unknown recognizer 'eigenvoice'"),
        (["empty", "--recognizer", "dlib-resnet"], "no aligned images"),
        (["empty", "--recognizer", "dlib-resnet", "--batch", "0"], "at least 1"),
    ],
)
def test_embed_explains_what_is_wrong(args: list[str], message: str) -> None:
    FaceDataset.objects.create(name="empty", root="/nonexistent")
    with pytest.raises(CommandError, match=message):
        call_command("embed", *args, "--no-progress")
