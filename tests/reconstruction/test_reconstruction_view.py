"""One view of a reconstruction per recognizer (`reconstruction_view`), used by every path.

dlib-resnet's gallery holds chips cut from each photo's own dlib landmarks; a reconstruction
(ArcFace frame, no photo) is cut with the fixed mean shape. These tests check that shape and
that view against real LFW photos, and that Metric 1, build_study, the bots and the
benchmarks' call give the same vector for the same reconstruction.
"""

from pathlib import Path

import numpy as np
import pytest

from reconstruction.faces import alignment
from reconstruction.recognizers.registry import (
    DLIB_SHAPE_IN_ARCFACE_FRAME,
    get_recognizer,
    reconstruction_embed,
    reconstruction_view,
)

pytestmark = pytest.mark.facedata


def _lfw_faces(face_data: Path, count: int) -> list[tuple[np.ndarray, alignment.AlignedFace]]:
    """The first ``count`` LFW photos (by path, one per identity) in which a face is found."""
    faces = []
    for folder in sorted((face_data / "lfw").iterdir()):
        photo = min(folder.glob("*.jpg"))
        pixels = alignment.decode_rgb(photo.read_bytes())
        face = alignment.align_face(pixels).face
        if face is not None:
            faces.append((pixels, face))
        if len(faces) == count:
            break
    return faces


def test_the_fixed_dlib_shape_is_the_mean_of_real_faces_in_the_arcface_frame(face_data):
    points = np.stack(
        [
            alignment.apply_transform(face.matrix, face.dlib_points)
            for _, face in _lfw_faces(face_data, 40)
        ]
    )
    # 40 faces (per-point s.d. about 2 px): their mean lies within 1 px of the constant.
    assert np.abs(points.mean(axis=0) - DLIB_SHAPE_IN_ARCFACE_FRAME).max() < 1.0


def test_dlib_view_of_an_arcface_crop_is_close_to_the_photo_s_own_chip(face_data):
    from reconstruction.faces.alignment import dlib_chip

    faces = _lfw_faces(face_data, 12)
    engine = get_recognizer("dlib-resnet")
    own_chips = []
    for pixels, face in faces:
        own_chips.append(dlib_chip(pixels, face.detection.box, face.dlib_points))
    gallery = engine.embed(np.stack(own_chips))  # as `dataset_embed` stores photos
    aligned = np.stack([face.aligned for _, face in faces])  # (12, 112, 112, 3)
    view = reconstruction_view("dlib-resnet", aligned)
    assert view.shape == (12, 150, 150, 3)
    through_view = (reconstruction_embed("dlib-resnet", aligned) * gallery).sum(axis=1)
    resized = (engine.embed(aligned) * gallery).sum(axis=1)  # the old Metric 1 input
    # The chip view sees the face as the gallery does: far closer than the resized crop.
    assert through_view.mean() > 0.97
    assert through_view.mean() > resized.mean() + 0.05
    assert (through_view > resized).all()


def test_a_rescaled_reconstruction_gets_the_same_framing(face_data):
    aligned = np.stack([face.aligned for _, face in _lfw_faces(face_data, 4)])
    doubled = np.repeat(np.repeat(aligned, 2, axis=1), 2, axis=2)  # the survey's 224 px size
    small, large = (reconstruction_embed("dlib-resnet", x) for x in (aligned, doubled))
    assert (small * large).sum(axis=1).min() > 0.99


def test_other_recognizers_see_the_arcface_frame_as_it_is():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    assert np.array_equal(reconstruction_view("mobileface", pixels), pixels)
    with pytest.raises(ValueError, match="square"):
        reconstruction_view("dlib-resnet", pixels[:, :100])


@pytest.mark.slow
@pytest.mark.django_db
def test_one_reconstruction_gets_one_dlib_vector_through_every_path(face_data, tmp_path):
    import io
    import random

    from django.core.management import call_command
    from PIL import Image

    from reconstruction.metric1.gallery import stored_vectors
    from reconstruction.metric1.services import _reconstruction_vectors
    from reconstruction.recognizers.embedding import dataset_embed
    from reconstruction.storage import aligned_pixels_of
    from reconstruction.studies.observers import (
        EmbeddingCache,
        RecognizerObserver,
        reconstruction_query_paths,
    )
    from survey.bots import ObserverParams
    from survey.models import MatchSet
    from tests.reconstruction.helpers import DATASET, tiny_reconstructed_dataset

    rows = tiny_reconstructed_dataset(face_data, tmp_path)
    dataset_embed(dataset=DATASET, recognizer="dlib-resnet", progress=False)
    pixels = aligned_pixels_of(rows)  # (3, 112, 112, 3), the stored reconstructions
    # The benchmarks (eigenfaces_attack) call this on their in-memory reconstructions.
    expected = reconstruction_embed("dlib-resnet", pixels)
    by_row = {row.pk: v for row, v in zip(rows, expected, strict=True)}

    # Metric 1 (`topk_evaluate`, hence evaluate_topk and the LFW sweep), computed then cached.
    for _ in range(2):
        metric1 = _reconstruction_vectors(
            rows, recognizer="dlib-resnet", device="cpu", cache_dir=tmp_path / "cache"
        )
        np.testing.assert_allclose(metric1, expected, atol=1e-6)

    # build_study: every candidate's score is the stored photo vector · the query vector.
    call_command(
        "build_study", "--dataset", DATASET, "--recognizer", "mobileface", "--no-progress",
        "--slug", "paths", "--title", "Paths", "--second", "dlib-resnet",
        "--methods", "eigenfaces", "--per-method", "3", stdout=io.StringIO(),
    )  # fmt: skip
    match_sets = list(MatchSet.objects.filter(study__slug="paths"))
    assert len(match_sets) == len(rows)
    for match_set in match_sets:
        query = by_row[match_set.provenance["reconstruction"]["id"]]
        listed = match_set.provenance["candidates"]
        photos = stored_vectors(
            [c["image_id"] for c in listed],
            recognizer="dlib-resnet",
            weights_sha256=get_recognizer("dlib-resnet").weights_sha256,
        )
        np.testing.assert_allclose([c["score"] for c in listed], photos @ query, atol=1e-5)

    # The bots: a reconstruction fetched losslessly gives the same vector ...
    cache = EmbeddingCache("dlib-resnet")
    for i, (row_pixels, vector) in enumerate(zip(pixels, expected, strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(row_pixels).save(buffer, "PNG")
        seen = cache.vector(f"http://x/r{i}.png", buffer.getvalue, reconstruction=True)
        np.testing.assert_allclose(seen, vector, atol=1e-6)
    # ... and an observer treats a built study's query images (224 px JPEGs) as
    # reconstructions: the same view, up to the JPEG's loss.
    observer = RecognizerObserver("dlib-resnet", ObserverParams())
    observer.reconstruction_paths = reconstruction_query_paths("paths")
    assert observer.reconstruction_paths == {m.query_image.url for m in match_sets}
    for match_set in match_sets:
        candidates = {c.rank: c.image.url for c in match_set.candidates.all()}
        files = {match_set.query_image.url: match_set.query_image}
        files.update({c.image.url: c.image for c in match_set.candidates.all()})

        def load(url: str, files: dict = files) -> bytes:
            with files[url].open("rb") as handle:
                return handle.read()

        observer.decide(
            query=match_set.query_image.url, candidates=candidates, load=load, rng=random.Random(0)
        )
        served = observer.cache.vector(match_set.query_image.url, lambda: b"")
        jpeg = alignment.decode_rgb(load(match_set.query_image.url))  # (224, 224, 3)
        np.testing.assert_allclose(served, reconstruction_embed("dlib-resnet", jpeg[None])[0])
        query = by_row[match_set.provenance["reconstruction"]["id"]]
        assert float(served @ query) > 0.98
