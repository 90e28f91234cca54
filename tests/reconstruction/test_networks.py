"""Shapes, parameter counts and the PGGAN layers of the reconstruction/recognition networks."""

import math

import pytest
import torch
from torch import nn

from reconstruction.methods.networks.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    count_parameters,
)
from reconstruction.methods.networks.naive import NaiveDecoder
from reconstruction.methods.networks.nbnet import NbBlock, NbNet, VGG19Features
from reconstruction.methods.networks.vec2face import Vec2FaceCritic, Vec2FaceGenerator
from reconstruction.recognizers.backbones.efficientnet import efficientnet_b0_face
from reconstruction.recognizers.backbones.iresnet import IResNet, iresnet50, load_state_dict_file


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_nbnet_b_maps_a_vector_to_a_160px_image_in_tanh_range() -> None:
    model = NbNet(128).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 128))
    assert out.shape == (2, 3, 160, 160)
    assert out.abs().max() <= 1
    # Channel arithmetic: 256 + 32·8 in block 1, transitions halve 256 → 8, last block 8 + 8.
    blocks = [m for m in model.blocks if isinstance(m, NbBlock)]
    assert [b.out_channels for b in blocks] == [512, 256, 128, 64, 32, 16]
    assert 2.9e6 < count_parameters(model) < 3.2e6  # 3.06 M at D = 128 (conv0: 0.82 M)


def test_nbnet_b_layer_sees_block_input_and_previous_layer_only() -> None:
    block = NbBlock(16, 3, 8, "nbnetb")
    assert [layer[0].num_features for layer in block.layers] == [16, 24, 24]
    dense = NbBlock(16, 3, 8, "dense")
    assert [layer[0].num_features for layer in dense.layers] == [16, 24, 32]


def test_naive_decoder_outputs_112px() -> None:
    model = NaiveDecoder(256).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 256))
    assert out.shape == (2, 3, 112, 112)
    assert 10e6 < count_parameters(model) < 15e6


def test_vec2face_generator_and_critic_at_paper_size() -> None:
    generator, critic = Vec2FaceGenerator(512).eval(), Vec2FaceCritic().eval()
    with torch.no_grad():
        images = generator(torch.randn(2, 512))
        scores = critic(torch.randn(2, 3, 128, 128))
    assert images.shape == (2, 3, 112, 112)
    assert scores.shape == (2,)
    # PGGAN at 128×128 (512 up to 32×32, then 256, 128): about 21 M parameters each.
    assert 18e6 < count_parameters(generator) < 24e6
    assert 18e6 < count_parameters(critic) < 26e6


def test_iresnet50_matches_insightface_size_and_keys() -> None:
    model = iresnet50().eval()
    assert count_parameters(model) == pytest.approx(43.6e6, rel=0.01)
    keys = model.state_dict().keys()
    for key in ("layer3.13.conv2.weight", "layer1.0.downsample.0.weight", "features.weight"):
        assert key in keys
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).shape == (1, 512)


def test_efficientnet_face_reduces_112_to_7x7_and_embeds_512() -> None:
    model = efficientnet_b0_face().eval()
    with torch.no_grad():
        trunk = model.conv_head(model.blocks(model.stem(torch.randn(1, 3, 112, 112))))
        out = model(torch.randn(2, 3, 112, 112))
    assert trunk.shape == (1, 1280, 7, 7)
    assert out.shape == (2, 512)
    assert model.fc.in_features == 1280 * 49
    # B0's trunk is ≈ 4.0 M parameters; the 62,720 → 512 FC adds ≈ 32.1 M.
    assert 35e6 < count_parameters(model) < 37e6


def test_state_dict_loading_is_strict_with_a_readable_error(tmp_path) -> None:
    small = IResNet((1, 1), widths=(8, 16), num_features=4, input_size=16)
    path = tmp_path / "w.pth"
    torch.save({f"module.{k}": v for k, v in small.state_dict().items()}, path)
    other = IResNet((1, 1), widths=(8, 16), num_features=4, input_size=16)
    load_state_dict_file(other, path)  # DDP "module." prefixes are accepted
    assert torch.equal(other.conv1.weight, small.conv1.weight)
    wrong = IResNet((1, 1), widths=(8, 32), num_features=4, input_size=16)
    with pytest.raises(ValueError, match=r"shape mismatches: .*layer2\.0"):
        load_state_dict_file(wrong, path)
    deeper = IResNet((1, 2), widths=(8, 16), num_features=4, input_size=16)
    with pytest.raises(ValueError, match=r"missing keys: layer2\.1\."):
        load_state_dict_file(deeper, path)


def test_vgg19_features_load_torchvision_style_keys(tmp_path) -> None:
    full = VGG19Features("relu5_4")
    path = tmp_path / "vgg19.pth"
    state = {f"features.{k}": v for k, v in full.features.state_dict().items()}
    torch.save({**state, "classifier.0.weight": torch.zeros(1)}, path)
    net = VGG19Features("relu3_2").load_vgg19(str(path))
    assert torch.equal(net.features[0].weight, full.features[0].weight)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 256, 8, 8)
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a VGG-19 state dict"):
        VGG19Features("relu3_2").load_vgg19(str(path))


def test_equalized_linear_scales_weights_at_run_time() -> None:
    layer = EqualizedLinear(8, 3)
    x = torch.randn(5, 8)
    expected = x @ (layer.weight * math.sqrt(2 / 8)).T + layer.bias
    assert torch.allclose(layer(x), expected)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.5)  # stored as N(0, 1)


def test_equalized_conv_scales_forward_and_gradient_by_he_constant() -> None:
    layer = EqualizedConv2d(4, 2, 3)
    plain = nn.Conv2d(4, 2, 3, padding=1)
    scale = math.sqrt(2 / (4 * 9))
    with torch.no_grad():
        plain.weight.copy_(layer.weight * scale)
        plain.bias.copy_(layer.bias)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(layer(x), plain(x), atol=1e-6)
    layer(x).sum().backward()
    plain(x).sum().backward()
    assert torch.allclose(layer.weight.grad, plain.weight.grad * scale, atol=1e-5)


def test_pixel_norm_gives_unit_mean_square_per_pixel() -> None:
    out = PixelNorm()(torch.randn(2, 6, 3, 3) * 5)
    assert torch.allclose(out.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_minibatch_stddev_matches_a_hand_computation() -> None:
    x = torch.arange(4 * 2 * 1 * 1, dtype=torch.float32).reshape(4, 2, 1, 1)
    out = MinibatchStdDev(group_size=2)(x)
    assert out.shape == (4, 3, 1, 1)
    # Groups pair samples (0, 2) and (1, 3): each feature differs by 4 → biased std 2.
    assert torch.allclose(out[:, 2].flatten(), torch.full((4,), 2.0), atol=1e-4)
    y = torch.zeros(4, 1, 2, 2)
    y[0] = 1.0  # group (0, 2) has std 0.5 per pixel; group (1, 3) has 0
    stat = MinibatchStdDev(group_size=2)(y)[:, 1, 0, 0]
    assert torch.allclose(stat, torch.tensor([0.5, 0.0, 0.5, 0.0]), atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdDev(group_size=4)(torch.zeros(6, 1, 1, 1))
