"""The ArcFace loss against a hand computation, and a tiny train_extractor run with resume."""

import math

import pytest
import torch
import torch.nn.functional as F

from reconstruction.recognizers.arcface import (
    ArcFaceHead,
    ExtractorConfig,
    arcface_logits,
    train_extractor,
)
from reconstruction.recognizers.backbones import build_backbone, load_backbone
from reconstruction.recognizers.backbones.iresnet import IResNet


def test_arcface_logits_add_the_angular_margin_to_the_true_class_only() -> None:
    cosine = torch.tensor([[0.6, 0.2, -0.1]])
    logits = arcface_logits(cosine, torch.tensor([0]), s=64.0, m=0.5)
    theta = math.acos(0.6)
    assert logits[0, 0].item() == pytest.approx(64 * math.cos(theta + 0.5), rel=1e-5)
    assert logits[0, 1:].tolist() == pytest.approx([64 * 0.2, 64 * -0.1], rel=1e-6)


def test_arcface_uses_the_linear_fallback_past_pi_minus_m() -> None:
    cosine = torch.tensor([[-0.95, 0.3]])  # θ ≈ 2.82 > π − 0.5
    logits = arcface_logits(cosine, torch.tensor([0]), s=1.0, m=0.5)
    assert logits[0, 0].item() == pytest.approx(-0.95 - math.sin(math.pi - 0.5) * 0.5, rel=1e-5)


def test_arcface_head_loss_equals_cross_entropy_of_hand_logits() -> None:
    head = ArcFaceHead(2, 2, s=64.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    embedding = torch.tensor([[3.0, 4.0]])  # cosines 0.6 and 0.8
    loss = head(embedding, torch.tensor([0]))
    target = 64 * math.cos(math.acos(0.6) + 0.5)
    expected = -target + math.log(math.exp(target) + math.exp(64 * 0.8))
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert F.cross_entropy(torch.tensor([[target, 51.2]]), torch.tensor([0])).item() == (
        pytest.approx(expected, rel=1e-4)
    )


def test_defaults_are_insightface_settings() -> None:
    config = ExtractorConfig()
    assert (config.s, config.m, config.lr, config.momentum, config.weight_decay) == (
        64.0,
        0.5,
        0.1,
        0.9,
        5e-4,
    )
    assert set(map(type, [build_backbone("arcface-r50")])) == {IResNet}
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone("arcface-r18")


def tiny_backbone() -> IResNet:
    torch.manual_seed(5)
    return IResNet((1, 1), widths=(4, 8), num_features=8, input_size=16)


def test_train_extractor_runs_resumes_and_is_deterministic(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 16, 16, generator=g) * 2 - 1
    labels = torch.arange(16) % 4
    config = ExtractorConfig.tiny()
    kwargs = {"seed": 0, "checkpoint_dir": tmp_path}
    partial = train_extractor(tiny_backbone(), images, labels, config, max_steps=2, **kwargs)
    assert partial.steps == 2
    assert partial.total_steps == 4
    resumed = train_extractor(tiny_backbone(), images, labels, config, **kwargs)
    assert resumed.start_step == 2
    assert resumed.complete
    straight = train_extractor(tiny_backbone(), images, labels, config, seed=0)
    with torch.no_grad():
        assert torch.equal(resumed.model(images[:2]), straight.model(images[:2]))
    assert "head" in resumed.extras

    path = tmp_path / "backbone.pth"
    torch.save(resumed.model.state_dict(), path)
    with pytest.raises(ValueError, match="does not fit IResNet"):
        load_backbone("arcface-r50", path)
