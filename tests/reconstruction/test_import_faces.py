import io
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from PIL import Image

from reconstruction.faces.datasets import (
    DatasetLayoutError,
    SplitRule,
    dataset_scan,
    splits_assign,
    splits_parse,
)
from reconstruction.models import Embedding, FaceDataset, FaceImage, Identity
from reconstruction.services import dataset_import

pytestmark = pytest.mark.django_db


def synthetic_image(path: Path, seed: int, fmt: str = "JPEG") -> None:
    """A small faceless image (a flat colour with a gradient): never a real photo."""
    image = Image.linear_gradient("L").resize((64, 80)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", image.size, (seed * 37 % 256, 90, 160)), 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("L" if fmt == "PPM" else "RGB").save(path, fmt)


@pytest.fixture
def faceless_dataset(tmp_path: Path) -> Path:
    """Three identities of faceless images, one unreadable file and one non-image file."""
    root = tmp_path / "faces"
    synthetic_image(root / "Alice" / "a1.jpg", 1)
    synthetic_image(root / "Alice" / "a2.PNG", 2, "PNG")
    synthetic_image(root / "Bob" / "b1.pgm", 3, "PPM")
    synthetic_image(root / "Carol" / "c1.BMP", 4, "BMP")
    (root / "Carol" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (root / "Carol" / "notes.txt").write_text("not an image")
    return root


def test_faceless_images_are_kept_as_no_face_and_listed(faceless_dataset):
    summary = dataset_import(name="synthetic", path=faceless_dataset, progress=False)
    assert summary.identities == 3
    assert summary.ok == 0
    assert sorted(summary.no_face) == ["Alice/a1.jpg", "Alice/a2.PNG", "Bob/b1.pgm", "Carol/c1.BMP"]
    assert [path for path, _ in summary.unreadable] == ["Carol/broken.jpg"]
    assert "cannot decode" in summary.unreadable[0][1]
    assert summary.ignored_files == 1
    statuses = dict(FaceImage.objects.values_list("relative_path", "status"))
    assert statuses["Carol/broken.jpg"] == FaceImage.Status.UNREADABLE
    assert list(statuses.values()).count(FaceImage.Status.NO_FACE) == 4
    dataset = FaceDataset.objects.get(name="synthetic")
    assert len(dataset.fingerprint) == 64


def test_re_running_an_import_creates_nothing_and_reprocesses_changed_files(faceless_dataset):
    first = dataset_import(name="synthetic", path=faceless_dataset, progress=False)
    fingerprint = FaceDataset.objects.get().fingerprint
    again = dataset_import(name="synthetic", path=faceless_dataset, progress=False)
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)
    assert again.identities_created == 0
    assert FaceImage.objects.count() == first.created
    assert FaceDataset.objects.get().fingerprint == fingerprint

    synthetic_image(faceless_dataset / "Alice" / "a1.jpg", 99)
    changed = dataset_import(name="synthetic", path=faceless_dataset, progress=False)
    assert (changed.created, changed.updated) == (0, 1)
    assert FaceImage.objects.count() == first.created
    assert FaceDataset.objects.get().fingerprint != fingerprint


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ("missing", "does not exist"),
        ("file", "is a file, not a folder"),
        ("empty", "has no identity folders"),
        ("loose", "holds 1 image\\(s\\) directly"),
        ("no_images", "hold no images"),
    ],
)
def test_bad_folders_get_a_clear_error(tmp_path, layout, needle):
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout != "missing":
        root.mkdir()
    if layout == "loose":
        synthetic_image(root / "photo.jpg", 1)
    if layout == "no_images":
        (root / "Alice").mkdir()
        (root / "Alice" / "readme.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=needle):
        dataset_scan(root)
    with pytest.raises(CommandError, match=needle):
        call_command("import_faces", "bad", str(root), "--no-progress")


def test_min_images_and_limit_identities_select_folders(faceless_dataset):
    scan = dataset_scan(faceless_dataset, min_images=2)
    assert [i.name for i in scan.identities] == ["Alice", "Carol"]
    assert scan.skipped_identities == 1
    assert [i.name for i in dataset_scan(faceless_dataset, limit_identities=1).identities] == [
        "Alice"
    ]
    with pytest.raises(DatasetLayoutError, match="lower --min-images"):
        dataset_scan(faceless_dataset, min_images=5)


def test_splits_are_identity_disjoint_exact_and_deterministic():
    counts = {f"person-{i}": 1 + i % 12 for i in range(200)}
    rules = splits_parse("train=0.5,target=0.2,gallery=0.3")
    first = splits_assign(counts, rules, seed=7)
    assert set(first) == set(counts)  # each identity in exactly one split
    assert sorted(first.values()).count("train") == 100
    assert list(first.values()).count("target") == 40
    assert splits_assign(dict(reversed(counts.items())), rules, seed=7) == first
    assert splits_assign(counts, rules, seed=8) != first


def test_split_with_minimum_images_takes_only_eligible_identities():
    counts = {f"person-{i}": 10 if i < 30 else 1 for i in range(100)}
    rules = (SplitRule("train", 0.6), SplitRule("target", 0.2, 10), SplitRule("gallery", 0.2))
    assignment = splits_assign(counts, rules, seed=0)
    targets = [n for n, s in assignment.items() if s == "target"]
    assert len(targets) == 20
    assert all(counts[n] == 10 for n in targets)
    assert splits_parse("target=0.2@10,train=0.8")[0] == SplitRule("target", 0.2, 10)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("train=0.5,target=0.2", "add up to 1"),
        ("train=1,train=0", "each split once"),
        ("holdout=1", "Unknown split"),
        ("train:1", "Cannot read split"),
    ],
)
def test_bad_split_specs_are_refused(text, needle):
    with pytest.raises(ValueError, match=needle):
        splits_parse(text, allowed=["train", "target", "gallery"])


def test_embedding_vector_length_must_match_its_dimension(faceless_dataset):
    dataset_import(name="synthetic", path=faceless_dataset, progress=False)
    image = FaceImage.objects.first()
    fields = {"recognizer": "r", "weights_sha256": "0" * 64, "preprocessing": "p"}
    Embedding.objects.create(
        image=image, source_sha256=image.sha256, dim=2, vector=bytes(8), **fields
    )
    with pytest.raises(IntegrityError):
        Embedding.objects.create(
            image=image, source_sha256=image.sha256, dim=3, vector=bytes(8), **fields
        )


@pytest.mark.facedata
def test_real_lfw_import_aligns_every_face_end_to_end(
    face_data, django_capture_on_commit_callbacks
):
    out = io.StringIO()
    args = ["lfw5", str(face_data / "lfw"), "--min-images", "10", "--limit-identities", "5"]
    call_command("import_faces", *args, "--seed", "3", "--no-progress", stdout=out)
    assert "5 identities" in out.getvalue()
    assert "50 ok, 0 no face, 0 unreadable" in out.getvalue()
    assert Identity.objects.count() == 5
    assert set(Identity.objects.values_list("split", flat=True)) <= {"train", "target", "gallery"}
    image = FaceImage.objects.ok().order_by("relative_path").first()
    assert len(image.landmarks) == 5
    assert len(image.dlib_landmarks) == 5
    assert (image.width, image.height) == (250, 250)
    with default_storage.open(image.aligned.name) as f:
        assert Image.open(f).size == (112, 112)
    with default_storage.open(image.crop160.name) as f:
        assert Image.open(f).size == (160, 160)

    out = io.StringIO()
    call_command("import_faces", *args, "--seed", "3", "--no-progress", stdout=out)
    assert "0 new, 0 changed, 50 unchanged" in out.getvalue()
    assert FaceImage.objects.count() == 50

    old_name = image.aligned.name
    FaceImage.objects.filter(pk=image.pk).update(sha256="0" * 64)  # as if the photo changed
    with django_capture_on_commit_callbacks(execute=True):
        summary = dataset_import(
            name="lfw5",
            path=face_data / "lfw",
            min_images=10,
            limit_identities=5,
            seed=3,
            progress=False,
        )
    assert (summary.created, summary.updated) == (0, 1)
    image.refresh_from_db()
    assert image.aligned.name != old_name
    assert default_storage.exists(image.aligned.name)
    assert not default_storage.exists(old_name)
