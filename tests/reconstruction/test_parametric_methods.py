"""Tiny train → reconstruct runs of NBNet, Naive and Vec2Face on synthetic data (CPU)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from reconstruction.methods import naive, nbnet, parametric, vec2face
from reconstruction.methods.feature_networks import FeatureNetwork, WhiteBoxError
from reconstruction.methods.networks.nbnet import VGG19Features
from reconstruction.training import CheckpointMismatchError, batch_indices, config_dict

DIM = 16
TINY_NBNET = {"init_channels": 16, "block_layers": (2, 1), "growth": 4, "batch_size": 4}


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


# NBNet (tiny, 8 faces): steps 0-3 are L1, 4-5 perceptual with its own optimiser.
@pytest.mark.parametrize(("method", "stop"), [("nbnet", 3), ("nbnet", 5), ("vec2face", 3)])
def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(
    method: str, stop: int, tmp_path
) -> None:
    vectors, _ = synthetic()
    interrupted = run(method, checkpoint_dir=tmp_path, max_steps=stop)
    assert interrupted.steps == stop
    assert not interrupted.complete
    resumed = run(method, checkpoint_dir=tmp_path)
    assert resumed.start_step == stop
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


class FlatFeatures(nn.Module):
    """A feature network whose output does not depend on the image: zero gradient."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :4] * 0  # (B, 4), constant


def optimiser_steps(train) -> list[tuple[int, float]]:
    """(optimiser id, learning rate) at every optimiser step taken while ``train()`` runs."""
    seen: list[tuple[int, float]] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(
            (id(optimizer), optimizer.param_groups[0]["lr"])
        )
    )
    try:
        train()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("restart", [True, False])
def test_nbnet_perceptual_phase_starts_a_fresh_adam_at_the_initial_rate(restart: bool) -> None:
    vectors, images = synthetic()  # 8 faces, batch 4: 2 steps per epoch
    config = replace(
        nbnet.NbNetConfig.tiny(),
        l1_epochs=3,
        perceptual_epochs=2,
        lr_decay=0.5,
        lr_decay_every=1,
        perceptual_restart=restart,
    )
    steps = optimiser_steps(
        lambda: nbnet.train(config, vectors, images, seed=0, features=vgg_features())
    )
    l1, perceptual = steps[:6], steps[6:]
    assert len(perceptual) == 4
    assert [lr for _, lr in l1] == pytest.approx([config.lr * 0.5**k for k in range(6)])
    if restart:  # the original's second script: a new Adam, its decay starting again
        assert {o for o, _ in perceptual}.isdisjoint({o for o, _ in l1})
        expected = [config.lr * 0.5**k for k in range(4)]
    else:  # the L1 phase's optimiser and its decayed rate carry over
        assert {o for o, _ in perceptual} == {o for o, _ in l1}
        expected = [config.lr * 0.5**k for k in range(6, 10)]
    assert [lr for _, lr in perceptual] == pytest.approx(expected)
    assert nbnet.NbNetConfig().perceptual_restart


def test_nbnet_replace_trains_the_perceptual_phase_on_the_perceptual_loss_alone() -> None:
    vectors, images = synthetic()
    trained = {}
    for mode in ("replace", "added"):
        config = replace(nbnet.NbNetConfig.tiny(), l1_epochs=0, perceptual_mode=mode)
        start = nbnet.train(config, vectors, images, seed=0, features=FlatFeatures(), max_steps=0)
        result = nbnet.train(config, vectors, images, seed=0, features=FlatFeatures())
        assert set(result.history[-1]) - {"step", "lr"} == (
            {"perceptual"} if mode == "replace" else {"l1", "perceptual"}
        )
        trained[mode] = [
            not torch.equal(a, b)
            for a, b in zip(start.model.parameters(), result.model.parameters(), strict=True)
        ]
    # A feature loss with zero gradient leaves the weights as they were when it replaces
    # L1; added to L1, the L1 term still trains them.
    assert not any(trained["replace"])
    assert any(trained["added"])
    assert nbnet.NbNetConfig().perceptual_mode == "replace"


def test_nbnet_refuses_f_as_its_perceptual_network_unless_white_box_is_allowed() -> None:
    paper = nbnet.NbNetConfig()
    assert nbnet.resolve_perceptual(paper, "mobileface").perceptual_recognizer == "faceres"
    assert nbnet.resolve_perceptual(paper, "dlib-resnet").perceptual_recognizer == "mobileface"
    as_f = replace(paper, perceptual_recognizer="mobileface")
    with pytest.raises(WhiteBoxError, match=r"'mobileface' is F itself.*--allow-white-box"):
        nbnet.resolve_perceptual(as_f, "mobileface")
    allowed = replace(as_f, allow_white_box=True)
    assert nbnet.resolve_perceptual(allowed, "mobileface") == allowed
    vgg = replace(paper, vgg19_weights="vgg19.pth")  # VGG-19 is never F
    assert nbnet.resolve_perceptual(vgg, "mobileface") == vgg
    vectors, images = synthetic()
    with pytest.raises(WhiteBoxError):
        nbnet.train(replace(as_f, **TINY_NBNET), vectors, images, seed=0, recognizer="mobileface")
    with pytest.raises(ValueError, match="name F"):
        nbnet.train(nbnet.NbNetConfig.tiny(), vectors, images, seed=0)


def test_nbnet_records_its_perceptual_network_in_the_result_and_the_file(tmp_path) -> None:
    vectors, images = synthetic()
    result = nbnet.train(nbnet.NbNetConfig.tiny(), vectors, images, seed=0, features=FlatFeatures())
    assert result.provenance == {
        "feature_network": "custom:FlatFeatures",
        "white_box": False,
        "allow_white_box": False,
    }
    nbnet.save_model(tmp_path / "model.pt", result)
    meta = torch.load(tmp_path / "model.pt", weights_only=True)["meta"]
    assert meta["feature_network"] == "custom:FlatFeatures"
    assert meta["white_box"] is False


def test_vec2face_refuses_f_as_its_identity_network_unless_white_box_is_allowed() -> None:
    as_f = replace(vec2face.Vec2FaceConfig(), identity_network="mobileface")
    with pytest.raises(WhiteBoxError, match="identity network 'mobileface' is F itself"):
        vec2face.resolve_identity(as_f, "mobileface")
    with pytest.raises(WhiteBoxError):
        vec2face.identity_network("mobileface", network="mobileface")
    allowed = replace(as_f, allow_white_box=True)
    assert vec2face.resolve_identity(allowed, "mobileface") == allowed
    other = replace(vec2face.Vec2FaceConfig(), identity_network="faceres")
    assert vec2face.resolve_identity(other, "mobileface") == other
    # dlib has no gradients: even allowed, it is reachable only through its student.
    dlib = replace(vec2face.Vec2FaceConfig(), identity_network="dlib-resnet", allow_white_box=True)
    with pytest.raises(ValueError, match="not differentiable"):
        vec2face.resolve_identity(dlib, "dlib-resnet")
    assert vec2face.Vec2FaceConfig().identity_network == "student"


def test_vec2face_allowed_white_box_uses_f_itself_against_v(mobileface) -> None:
    network = vec2face.identity_network("mobileface", network="mobileface", allow_white_box=True)
    assert (network.source, network.white_box, network.in_f_space) == (
        "recognizer:mobileface",
        True,
        True,
    )
    out = network.module(torch.zeros(2, 3, 112, 112))  # [-1, 1] images -> F's 256-D vectors
    assert out.shape == (2, 256)


def test_vec2face_student_of_f_is_black_box_and_recorded() -> None:
    vectors, images = synthetic(n=8, size=16)
    network = vec2face.identity_network(
        "mobileface",
        images=images,
        targets=F.normalize(vectors, dim=1),  # F's answers to queries: no F gradients
        student_config=vec2face.StudentConfig.tiny(),
    )
    assert (network.source, network.white_box, network.in_f_space) == (
        "student-of:mobileface",
        False,
        True,
    )
    result = vec2face.train(
        vec2face.Vec2FaceConfig.tiny(), vectors, images, seed=0, identity=network
    )
    assert result.provenance == {
        "feature_network": "student-of:mobileface",
        "white_box": False,
        "allow_white_box": False,
    }


def test_vec2face_second_recognizer_compares_its_features_of_fake_and_real() -> None:
    class OtherSpace(nn.Module):  # a second recognizer H: 5-D, not F's 16-D space
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(4)
            self.conv = nn.Conv2d(3, 5, 3)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.conv(images).mean(dim=(2, 3)), dim=1)

    vectors, images = synthetic()
    network = FeatureNetwork(OtherSpace(), "recognizer:other", white_box=False, in_f_space=False)
    result = vec2face.train(
        vec2face.Vec2FaceConfig.tiny(), vectors, images, seed=0, identity=network
    )
    assert result.complete
    assert 0 <= result.history[-1]["id"] <= 2  # 1 − cos(H(G(v)), H(x)), shapes agree
    assert result.provenance["feature_network"] == "recognizer:other"


def test_configs_of_artifacts_stored_before_the_black_box_rule_say_how_they_were_trained() -> None:
    old_nbnet = {"perceptual_mode": "add", "perceptual_recognizer": "mobileface"}
    config = parametric.config_from_artifact("nbnet", old_nbnet, recognizer="mobileface")
    assert (config.perceptual_mode, config.perceptual_restart, config.allow_white_box) == (
        "added",
        False,  # the old loop carried the L1 phase's optimiser over
        True,  # and had no black-box rule
    )
    old_vec2face = {"lambda_id": 10.0}  # F itself when differentiable, else a student
    for f, network in (("mobileface", "mobileface"), ("dlib-resnet", "student")):
        config = parametric.config_from_artifact("vec2face", old_vec2face, recognizer=f)
        assert (config.identity_network, config.allow_white_box) == (network, True)
    current = config_dict(nbnet.NbNetConfig.tiny())
    assert parametric.config_from_artifact("nbnet", current) == nbnet.NbNetConfig.tiny()


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
