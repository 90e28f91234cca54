"""Recognizer registry; whole models against TensorFlow.js reference outputs on real photos."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reconstruction.model_store import TFJS_MODELS, ModelStoreError, tfjs_model_path
from reconstruction.recognizers.backbones.tfjs_graph import TfjsGraph
from reconstruction.recognizers.registry import (
    RECOGNIZERS,
    TfjsRecognizer,
    get_recognizer,
    l2_normalize,
    resize_bilinear,
)

REFERENCE = Path(__file__).parent / "data" / "tfjs_reference.json"


def _central_crop(path: Path, size: int) -> np.ndarray:
    """The preprocessing recorded in tfjs_reference.json: central size×size window."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))
    top = (pixels.shape[0] - size) // 2
    left = (pixels.shape[1] - size) // 2
    return pixels[top : top + size, left : left + size]


def _tfjs_recognizer(name: str) -> TfjsRecognizer:
    try:
        tfjs_model_path(name)
    except ModelStoreError as error:
        pytest.skip(f"{name} model files not available (npm absent or offline?): {error}")
    recognizer = get_recognizer(name)
    assert isinstance(recognizer, TfjsRecognizer)
    return recognizer


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _reference_crops(face_data: Path, reference: dict, name: str) -> np.ndarray:
    size = reference["models"][name]["input_size"]
    paths = [face_data / p for p in reference["photos"]]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"reference photos missing under {face_data}")
    return np.stack([_central_crop(p, size) for p in paths])


def test_registry_describes_each_recognizer_without_loading_weights() -> None:
    expected = {"dlib-resnet": (150, 128), "faceres": (224, 1024), "mobileface": (112, 256)}
    assert set(RECOGNIZERS) == set(expected)
    for name, (size, dim) in expected.items():
        recognizer = RECOGNIZERS[name]()
        assert (recognizer.name, recognizer.input_size, recognizer.embedding_dim) == (
            name,
            size,
            dim,
        )
        assert recognizer.preprocessing
    faceres = RECOGNIZERS["faceres"]()
    assert faceres.weights_sha256 == TFJS_MODELS["faceres"].weights_sha256
    assert faceres._networks == {}


def test_unknown_recognizer_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mobileface"):
        get_recognizer("vgg-face")


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_resize_bilinear_keeps_constant_images_constant() -> None:
    images = torch.full((2, 3, 50, 70), 0.25)
    out = resize_bilinear(images, 112)
    assert out.shape == (2, 3, 112, 112)
    torch.testing.assert_close(out, torch.full_like(out, 0.25))
    assert resize_bilinear(out, 112) is out


def test_embed_rejects_images_that_are_not_uint8_rgb() -> None:
    recognizer = RECOGNIZERS["mobileface"]()
    with pytest.raises(ValueError, match="uint8 RGB"):
        recognizer.embed(np.zeros((2, 112, 112, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        recognizer.embed(np.zeros((112, 112, 3), dtype=np.uint8))


@pytest.mark.facedata
@pytest.mark.parametrize("name", ["faceres", "mobileface"])
def test_executor_matches_tensorflow_js_on_real_faces(
    name: str, face_data: Path, reference: dict
) -> None:
    recognizer = _tfjs_recognizer(name)
    expected = reference["models"][name]
    assert expected["weights_sha256"] == recognizer.weights_sha256
    crops = _reference_crops(face_data, reference, name)
    embeddings = recognizer.embed(crops, batch_size=2)
    tfjs = np.asarray(expected["outputs"], dtype=np.float64)
    cosines = (embeddings * l2_normalize(tfjs)).sum(axis=1)
    assert embeddings.shape == (3, recognizer.embedding_dim)
    assert cosines.min() >= 0.9999, cosines
    # The raw graph output, not only its direction, matches too (input scale is right).
    graph = TfjsGraph.from_path(tfjs_model_path(name), outputs=[expected["output_node"]])
    with torch.inference_mode():
        raw = graph(torch.from_numpy(recognizer.config.model_input(crops))).numpy()
    np.testing.assert_allclose(raw, tfjs, rtol=1e-3, atol=1e-3 * np.abs(tfjs).max())


@pytest.mark.facedata
def test_faceres_finds_the_same_person_closer_than_another(
    face_data: Path, reference: dict
) -> None:
    recognizer = _tfjs_recognizer("faceres")
    e = recognizer.embed(_reference_crops(face_data, reference, "faceres"))
    # photos 0 and 1 are Abdullah Gul, photo 2 is Adrien Brody
    assert e[0] @ e[1] > max(e[0] @ e[2], e[1] @ e[2])


@pytest.mark.facedata
def test_mobileface_embeds_any_size_and_is_differentiable(face_data: Path, reference: dict) -> None:
    recognizer = _tfjs_recognizer("mobileface")
    crops = _reference_crops(face_data, reference, "faceres")  # 224×224, resized to 112
    embeddings = recognizer.embed(crops)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255).requires_grad_()
    target = torch.from_numpy(embeddings[[1, 2, 0]])
    loss = -(recognizer.network()(x) * target).sum()
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.facedata
def test_dlib_resnet_on_chips_matches_dlib_on_the_full_photo(
    face_data: Path, reference: dict
) -> None:
    import dlib
    import face_recognition_models
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    recognizer = get_recognizer("dlib-resnet")
    photos, shapes = [], []
    for relative in reference["photos"]:
        pixels = np.asarray(Image.open(face_data / relative).convert("RGB"))
        photos.append(pixels)
        shapes.append(predictor(pixels, detector(pixels, 1)[0]))
    chips = np.stack(
        [dlib.get_face_chip(p, s, 150, 0.25) for p, s in zip(photos, shapes, strict=True)]
    )
    embeddings = recognizer.embed(chips)
    model = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location()
    )
    direct = l2_normalize(
        np.array([model.compute_face_descriptor(p, s) for p, s in zip(photos, shapes, strict=True)])
    )
    assert (embeddings * direct).sum(axis=1).min() > 0.9999
    assert embeddings[0] @ embeddings[1] > max(
        embeddings[0] @ embeddings[2], embeddings[1] @ embeddings[2]
    )
    assert len(recognizer.weights_sha256) == 64
