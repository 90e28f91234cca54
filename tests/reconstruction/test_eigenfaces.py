"""Eigenfaces: determinism, the black-box property, resume, basis fitting, real-face progress."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from reconstruction.methods import METHODS, config_from_preset, get_method
from reconstruction.methods.eigenbasis import (
    EigenBasis,
    EigenBasisConfig,
    fit_eigenbasis,
    from_unit,
    to_unit,
)
from reconstruction.methods.eigenfaces import EigenfacesConfig, reconstruct

SIZE = 112


def synthetic_faces(count: int, seed: int) -> np.ndarray:
    """Smooth random blobs (uint8 RGB, 112×112): stand-ins for aligned faces, never photos."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(count, 3, 7, 7)).astype(np.float32)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(small), size=(SIZE, SIZE), mode="bicubic"
    )
    return big.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class ProjectionRecognizer:
    """A fake F: fixed random projection of the uint8 pixels, numpy in and out (no torch).

    Records every batch it sees, so tests can check what the attack sends it."""

    name = "projection"
    weights_sha256 = "0" * 64

    def __init__(self, seed: int = 0, dim: int = 32) -> None:
        rng = np.random.default_rng(seed)
        # Low-frequency features (8×8 average pools) so small image changes move the vector.
        self.matrix = rng.standard_normal((3 * 14 * 14, dim)).astype(np.float32)
        self.batches: list[np.ndarray] = []

    def embed(self, images: np.ndarray, *, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
        assert isinstance(images, np.ndarray)
        assert images.dtype == np.uint8
        self.batches.append(images)
        pooled = images.reshape(len(images), 14, 8, 14, 8, 3).mean(axis=(2, 4)) / 255.0
        out = pooled.reshape(len(images), -1) @ self.matrix
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_basis() -> EigenBasis:
    faces = synthetic_faces(12, seed=1)
    return fit_eigenbasis(faces, config=EigenBasisConfig.tiny("pca"), seed=0, progress=False)


def run_tiny(basis: EigenBasis, recognizer: object, seed: int, **kwargs: object) -> object:
    target = ProjectionRecognizer().embed(synthetic_faces(1, seed=99))[0]
    return reconstruct(
        target=target,
        recognizer=recognizer,
        artifact=basis,
        config=kwargs.pop("config", EigenfacesConfig.tiny()),
        seed=seed,
        device="cpu",
        progress=False,
        **kwargs,
    )


def test_registry_offers_eigenfaces_with_paper_defaults_and_tiny_preset():
    method = get_method("eigenfaces")
    assert METHODS["eigenfaces"] is method
    paper = config_from_preset(method.config, "paper")
    assert (paper.batch_size, paper.iterations, paper.restarts) == (64, 2000, 10)
    assert (paper.restart_iterations, paper.lr_restart, paper.lr_refine) == (100, 0.005, 0.001)
    assert config_from_preset(method.config, "tiny").iterations < 100
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")


def test_same_seed_and_inputs_give_identical_output_and_another_seed_does_not(tiny_basis):
    first = run_tiny(tiny_basis, ProjectionRecognizer(), seed=3)
    again = run_tiny(tiny_basis, ProjectionRecognizer(), seed=3)
    other = run_tiny(tiny_basis, ProjectionRecognizer(), seed=4)
    assert np.array_equal(first.image, again.image)
    assert first.cosine == again.cosine
    assert not np.array_equal(first.image, other.image)
    assert first.image.shape == (SIZE, SIZE, 3)
    assert first.image.dtype == np.uint8


def test_attack_sees_only_output_vectors_of_uint8_images(tiny_basis):
    recognizer = ProjectionRecognizer()
    config = EigenfacesConfig.tiny()
    result = run_tiny(tiny_basis, recognizer, seed=0)
    # Every query was a uint8 numpy batch (asserted inside embed): no gradient can flow.
    assert result.queries == config.iterations * config.batch_size + 1
    assert sum(len(b) for b in recognizer.batches) == result.queries
    assert 0 < result.forward_seconds <= result.seconds
    assert 0 < result.forward_share <= 1


def test_torch_recognizers_run_under_inference_mode(tiny_basis):
    inner = ProjectionRecognizer()

    class Network(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) in [0, 1]
            assert torch.is_inference_mode_enabled()
            assert float(x.min()) >= 0
            assert float(x.max()) <= 1
            uint8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            return torch.from_numpy(inner.embed(uint8))

    class TorchRecognizer(ProjectionRecognizer):
        def network(self, device: torch.device) -> torch.nn.Module:
            return Network()

    result = run_tiny(tiny_basis, TorchRecognizer(), seed=0)
    assert result.cosine > 0


def test_search_only_ever_improves_and_beats_the_mean_face(tiny_basis):
    recognizer = ProjectionRecognizer()
    target = recognizer.embed(synthetic_faces(1, seed=99))[0]
    mean_image = from_unit(tiny_basis.mean_face[None])
    baseline = float(recognizer.embed(mean_image)[0] @ target)
    config = EigenfacesConfig(batch_size=16, iterations=60, restarts=2, restart_iterations=10)
    result = run_tiny(tiny_basis, ProjectionRecognizer(), seed=0, config=config)
    trace = result.details["trace_every_10"]
    assert all(b >= a for a, b in itertools.pairwise(trace[2:]))  # the refining phase
    assert result.cosine > baseline


def test_interrupted_run_resumes_from_its_checkpoint_to_the_same_result(tiny_basis, tmp_path):
    config = EigenfacesConfig(
        batch_size=8, iterations=20, restarts=2, restart_iterations=5, checkpoint_every=3
    )
    whole = run_tiny(tiny_basis, ProjectionRecognizer(), seed=5, config=config)

    class Crash(Exception):
        pass

    class Failing(ProjectionRecognizer):
        def embed(self, images: np.ndarray, **kwargs: object) -> np.ndarray:
            if len(self.batches) == 13:
                raise Crash
            return super().embed(images, **kwargs)

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Crash):
        run_tiny(tiny_basis, Failing(), seed=5, config=config, checkpoint=checkpoint)
    assert torch.load(checkpoint, weights_only=False)["iteration"] == 12
    resumed = run_tiny(
        tiny_basis, ProjectionRecognizer(), seed=5, config=config, checkpoint=checkpoint
    )
    assert resumed.details["resumed_from"] == 12
    assert np.array_equal(resumed.image, whole.image)
    assert resumed.queries == whole.queries


def test_pca_basis_pads_to_1024_codes_with_orthogonal_directions():
    faces = synthetic_faces(6, seed=2)
    basis = fit_eigenbasis(
        faces, config=EigenBasisConfig(method="pca", components=20), seed=0, progress=False
    )
    assert basis.decoder.shape == (20, 3 * SIZE * SIZE)
    assert basis.data_components == 5  # n − 1
    fitted, padded = basis.decoder[:5], basis.decoder[5:]
    assert torch.allclose(fitted @ padded.T, torch.zeros(5, 15), atol=1e-3)
    steps = basis.decode(torch.randn(4, 20))  # (4, 3, S, S)
    flat = steps.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-4)
    assert torch.allclose(flat.std(1), torch.ones(4), atol=1e-3)
    assert torch.allclose(basis.mean_face, to_unit(faces).mean(0), atol=1e-5)


def test_pca_components_span_the_faces_it_was_fitted_on():
    faces = synthetic_faces(8, seed=3)
    basis = fit_eigenbasis(
        faces,
        config=EigenBasisConfig(method="pca", components=7, soft_symmetric_target=False),
        seed=0,
        progress=False,
    )
    centred = (to_unit(faces) - basis.mean_face).flatten(1)  # (8, P)
    q, _ = torch.linalg.qr(basis.decoder.T)  # (P, 7)
    residual = centred - (centred @ q) @ q.T
    assert float(residual.norm() / centred.norm()) < 1e-3


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_pca_directions_are_scaled_by_sigma_to_the_configured_power(power: float):
    faces = synthetic_faces(9, seed=5)
    basis = fit_eigenbasis(
        faces,
        config=EigenBasisConfig(
            method="pca", components=8, soft_symmetric_target=False, sigma_power=power
        ),
        seed=0,
        progress=False,
    )
    centred = (to_unit(faces) - basis.mean_face).flatten(1).double()  # (9, P)
    sigma = torch.linalg.svdvals(centred)[:8] / (len(faces) - 1) ** 0.5
    norms = basis.decoder.double().norm(dim=1)  # each row: a unit direction times its scale
    assert torch.allclose(norms, sigma**power, rtol=1e-3)


def test_sigma_power_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="sigma_power"):
        EigenBasisConfig(method="pca", sigma_power=1.5)


def test_autoencoder_basis_trains_and_round_trips_through_its_file(tmp_path: Path):
    faces = synthetic_faces(10, seed=4)
    config = EigenBasisConfig.tiny("autoencoder")
    basis = fit_eigenbasis(faces, config=config, seed=0, progress=False)
    losses = basis.meta["losses"]
    assert len(losses) == config.epochs + 1  # the PCA start, then one per epoch
    # PCA is already the best linear reconstruction under MSE, so training from it can only
    # adjust for the grey input and standardisation: it must stay close to that start (an
    # unrelated decoder scores 2 on standardised vectors).
    assert losses[-1] < min(0.5, 2 * losses[0])
    assert basis.decoder.shape == (config.components, 3 * SIZE * SIZE)
    path = tmp_path / "basis.pt"
    path.write_bytes(basis.to_bytes())
    loaded = EigenBasis.load(path)
    assert torch.equal(loaded.decoder, basis.decoder)
    assert len(loaded.meta["sha256"]) == 64


@pytest.mark.facedata
def test_cosine_improves_over_iterations_on_a_real_face_with_mobileface(face_data):
    from reconstruction.faces import alignment
    from reconstruction.model_store import ModelStoreError
    from reconstruction.recognizers.registry import get_recognizer

    recognizer = get_recognizer("mobileface")
    try:
        recognizer.network("cpu")
    except ModelStoreError as exc:
        pytest.skip(f"mobileface model files unavailable: {exc}")
    lfw = face_data / "lfw"
    # Basis on two identities with 3 photos, target from another identity: disjoint people.
    basis_paths = (
        sorted(lfw.glob("Abdullah_Gul/*.jpg"))[:3] + sorted(lfw.glob("Adrien_Brody/*.jpg"))[:3]
    )
    target_path = sorted(lfw.glob("Alejandro_Toledo/*.jpg"))[0]

    def aligned(path: Path) -> np.ndarray:
        face = alignment.align_face(alignment.decode_rgb(path.read_bytes())).face
        assert face is not None, path
        return face.aligned

    faces = np.stack([aligned(p) for p in basis_paths])
    basis = fit_eigenbasis(
        faces, config=EigenBasisConfig(method="pca", components=64), seed=0, progress=False
    )
    target = recognizer.embed(aligned(target_path)[None])[0]
    start = float(recognizer.embed(from_unit(basis.mean_face[None]))[0] @ target)
    config = EigenfacesConfig(batch_size=16, iterations=60, restarts=2, restart_iterations=10)
    result = reconstruct(
        target=target,
        recognizer=recognizer,
        artifact=basis,
        config=config,
        seed=0,
        device="cpu",
        progress=False,
    )
    trace = result.details["trace_every_10"]
    assert trace[-1] > trace[2]  # the refining phase keeps gaining
    assert result.cosine > start + 0.03  # 960 queries, 6 basis photos: a small but real gain
