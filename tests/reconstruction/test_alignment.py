import math

import numpy as np
import pytest

from reconstruction.faces import alignment
from reconstruction.faces.alignment import ARCFACE_TEMPLATE, CROP_SIZE, Detection


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = math.radians(17), 0.43, np.array([12.5, -7.25])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    source = np.random.default_rng(0).uniform(0, 250, size=(5, 2))
    target = source @ (scale * rotation).T + shift
    matrix = alignment.similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_similarity_transform_never_reflects():
    source = ARCFACE_TEMPLATE.copy()
    mirrored = source * [-1, 1]
    matrix = alignment.similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_warp_puts_a_source_pixel_where_the_matrix_maps_it():
    image = np.zeros((200, 240, 3), dtype=np.uint8)
    image[120, 90] = 255  # row y=120, column x=90
    matrix = alignment.similarity_transform(
        np.array([[0.0, 0.0], [100.0, 0.0]]), np.array([[130.0, 20.0], [130.0, 120.0]])
    )  # rotate 90° at scale 1, then shift
    expected = alignment.apply_transform(matrix, np.array([[90.0, 120.0]]))[0]
    warped = alignment.warp(image, matrix, 160)[..., 0].astype(float)
    ys, xs = np.nonzero(warped)
    centre = np.array([(xs * warped[ys, xs]).sum(), (ys * warped[ys, xs]).sum()]) / warped.sum()
    np.testing.assert_allclose(centre, expected, atol=0.05)


def test_arcface_points_use_eye_centres_nose_tip_and_mouth_corners():
    landmarks = np.arange(68 * 2, dtype=float).reshape(68, 2)
    points = alignment.arcface_points(landmarks)
    np.testing.assert_allclose(points[0], landmarks[36:42].mean(axis=0))
    np.testing.assert_allclose(points[1], landmarks[42:48].mean(axis=0))
    np.testing.assert_allclose(points[2:], landmarks[[30, 48, 54]])


def test_central_face_is_chosen_over_a_larger_off_centre_one():
    central = Detection(box=(100, 100, 150, 150), score=0.2)
    big_edge = Detection(box=(0, 0, 90, 90), score=2.0)
    assert alignment.central_face([big_edge, central], 250, 250) == central


def test_garbage_bytes_are_unreadable():
    with pytest.raises(alignment.UnreadableImageError):
        alignment.decode_rgb(b"not an image at all")


def test_blank_image_has_no_face():
    result = alignment.align_face(np.full((120, 100, 3), 128, dtype=np.uint8))
    assert result.face is None
    assert (result.width, result.height) == (100, 120)


def _landmarks_in_aligned(face: alignment.AlignedFace, size: int) -> np.ndarray:
    """Run the 68-point predictor again on an aligned crop, in the mapped detection box."""
    matrix = face.matrix * (size / alignment.ALIGNED_SIZE)
    left, top, right, bottom = face.detection.box
    corners = alignment.apply_transform(
        matrix, np.array([[left, top], [right, top], [left, bottom], [right, bottom]])
    )
    box = (*corners.min(axis=0).round().astype(int), *corners.max(axis=0).round().astype(int))
    image = face.aligned if size == alignment.ALIGNED_SIZE else face.crop160
    return alignment.arcface_points(alignment.shape_points(image, box))


@pytest.mark.facedata
def test_real_photos_align_onto_the_arcface_template(face_data):
    folders = sorted(p for p in (face_data / "lfw").iterdir() if p.is_dir())[:400:50]
    photos = [sorted(folder.iterdir())[0] for folder in folders]
    template_errors, warp_errors, crop_errors = [], [], []
    for photo in photos:
        result = alignment.align_face(alignment.decode_rgb(photo.read_bytes()))
        assert result.face is not None, photo.name
        face = result.face
        assert face.aligned.shape == (112, 112, 3)
        assert face.crop160.shape == (CROP_SIZE, CROP_SIZE, 3)
        found = _landmarks_in_aligned(face, 112)
        mapped = alignment.apply_transform(face.matrix, face.points)
        template_errors.append(np.linalg.norm(found - ARCFACE_TEMPLATE, axis=1).mean())
        warp_errors.append(np.linalg.norm(found - mapped, axis=1).mean())
        found160 = _landmarks_in_aligned(face, CROP_SIZE)
        crop_errors.append(np.linalg.norm(found160 * 112 / CROP_SIZE - found, axis=1).mean())
    # The fit's own residual (faces differ from the template) is ≈ 2–3 px at 112×112.
    assert np.mean(template_errors) < 3.5, template_errors
    assert np.mean(warp_errors) < 1.5, warp_errors
    assert np.mean(crop_errors) < 1.5, crop_errors
