"""Tiny train → reconstruct runs of NBNet, Naive and Vec2Face on synthetic data (CPU)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reconstruction.methods import naive, nbnet, vec2face
from reconstruction.methods.training import CheckpointMismatchError, batch_indices
from reconstruction.networks.nbnet import VGG19Features

DIM = 16


def synthetic(n: int = 8, size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors and images in [-1, 1] that depend on each other (no photos needed)."""
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(n, DIM, generator=g)
    images = torch.tanh(
        vectors[:, :3, None, None] + 0.1 * torch.randn(n, 3, size, size, generator=g)
    )
    return vectors, images


class TinyIdentity(nn.Module):
    """A frozen stand-in for F: [-1, 1] images -> unit DIM-vectors."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, DIM, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.conv(images).mean(dim=(2, 3)), dim=1)


def vgg_features() -> nn.Module:
    torch.manual_seed(2)
    return VGG19Features("relu1_1").eval()


def run(method: str, **kwargs):
    vectors, images = synthetic()
    if method == "nbnet":
        return nbnet.train(
            nbnet.NbNetConfig.tiny(), vectors, images, seed=0, features=vgg_features(), **kwargs
        )
    if method == "naive":
        return naive.train(naive.NaiveConfig.tiny(), vectors, images, seed=0, **kwargs)
    return vec2face.train(
        vec2face.Vec2FaceConfig.tiny(), vectors, images, seed=0, identity=TinyIdentity(), **kwargs
    )


MODULES = {"nbnet": nbnet, "naive": naive, "vec2face": vec2face}
SIZES = {"nbnet": 20, "naive": 14, "vec2face": 8}


@pytest.mark.parametrize("method", ["nbnet", "naive", "vec2face"])
def test_tiny_training_reconstructs_images_in_range(method: str, tmp_path) -> None:
    result = run(method)
    assert result.complete
    assert result.history
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in result.history)
    vectors, _ = synthetic()
    out = MODULES[method].reconstruct(result.model, vectors[:3])
    size = SIZES[method]
    assert out.shape == (3, 3, size, size)
    assert out.min() >= -1
    assert out.max() <= 1
    path = MODULES[method].save_model(tmp_path / "model.pt", result)
    loaded = MODULES[method].load_model(path)
    assert torch.equal(MODULES[method].reconstruct(loaded, vectors[:3]), out)


@pytest.mark.parametrize("method", ["nbnet", "naive", "vec2face"])
def test_same_seed_and_inputs_give_the_same_reconstruction(method: str) -> None:
    vectors, _ = synthetic()
    first = MODULES[method].reconstruct(run(method).model, vectors)
    second = MODULES[method].reconstruct(run(method).model, vectors)
    assert torch.equal(first, second)


@pytest.mark.parametrize("method", ["nbnet", "vec2face"])
def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(
    method: str, tmp_path
) -> None:
    vectors, _ = synthetic()
    interrupted = run(method, checkpoint_dir=tmp_path, max_steps=3)
    assert interrupted.steps == 3
    assert not interrupted.complete
    resumed = run(method, checkpoint_dir=tmp_path)
    assert resumed.start_step == 3
    assert resumed.complete
    straight = run(method)
    assert torch.equal(
        MODULES[method].reconstruct(resumed.model, vectors),
        MODULES[method].reconstruct(straight.model, vectors),
    )


def test_a_checkpoint_from_another_run_is_refused(tmp_path) -> None:
    vectors, images = synthetic()
    naive.train(naive.NaiveConfig.tiny(), vectors, images, seed=0, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="seed"):
        naive.train(naive.NaiveConfig.tiny(), vectors, images, seed=1, checkpoint_dir=tmp_path)


def test_nbnet_perceptual_phase_replaces_l1_by_default_and_adds_on_request() -> None:
    vectors, images = synthetic()
    keys = {}
    for mode in ("replace", "add"):
        config = replace(nbnet.NbNetConfig.tiny(), l1_epochs=0, perceptual_mode=mode)
        result = nbnet.train(config, vectors, images, seed=0, features=vgg_features())
        keys[mode] = set(result.history[-1]) - {"step"}
    assert keys == {"replace": {"perceptual"}, "add": {"l1", "perceptual"}}
    assert nbnet.NbNetConfig().perceptual_mode == "replace"


def test_vec2face_gradient_penalty_is_zero_for_a_unit_slope_critic() -> None:
    class Linear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, 0]  # gradient norm exactly 1

    real, fake = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    assert vec2face.gradient_penalty(Linear(), real, fake).item() == pytest.approx(0.0)


def test_student_learns_to_mimic_a_fixed_extractor() -> None:
    _, images = synthetic(n=16, size=16)
    teacher = TinyIdentity()
    with torch.no_grad():
        targets = teacher(images)
    config = vec2face.StudentConfig.tiny()
    config = replace(config, epochs=4, batch_size=8, lr=1e-2)
    untrained = vec2face.train_student(config, images, targets, seed=0, max_steps=0).model
    result = vec2face.train_student(config, images, targets, seed=0)
    with torch.no_grad():
        before = (untrained(images) * targets).sum(dim=1).mean()
        out = result.model(images)
    assert (out * targets).sum(dim=1).mean() > before + 0.1
    assert out.shape == (16, DIM)
    assert torch.allclose(out.norm(dim=1), torch.ones(16), atol=1e-5)


def test_batches_cover_each_epoch_once_and_depend_only_on_seed_and_step() -> None:
    epoch = torch.cat([batch_indices(10, 3, 7, s) for s in range(3)])
    assert len(set(epoch.tolist())) == 9
    assert torch.equal(batch_indices(10, 3, 7, 4), batch_indices(10, 3, 7, 4))
