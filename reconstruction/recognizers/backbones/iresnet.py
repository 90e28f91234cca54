"""Improved ResNet (iResNet) face backbones, as in insightface's ArcFace training code.

Paper: J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
Face Recognition", CVPR 2019 (the "IR-SE"/"iResNet" backbone of § 3). Layout, defaults and
parameter names from insightface ``recognition/arcface_torch/backbones/iresnet.py``: 112×112
RGB input in [-1, 1]; a stride-1 3×3 stem (64 ch, BN, PReLU); four stages of ``IBasicBlock``
(BN-3×3 conv-BN-PReLU-3×3 conv (stride on the second conv)-BN, plus a 1×1 conv+BN shortcut
when the shape changes) with 64/128/256/512 channels, each halving the size (112 → 7); then
BN → dropout → FC(512·7·7 → 512) → BN1d ("features", weight fixed at 1). iresnet50 has
stages [3, 4, 14, 3] and ≈ 43.6 M parameters.

Weights: none shipped; the study's Res50 was trained on MS1M with the ArcFace loss. Load a
user state dict with ``load_state_dict_file`` — the key names match insightface's, so its
released ``backbone.pth`` files load unchanged (strict; mismatches are listed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "IBasicBlock",
    "IResNet",
    "iresnet18",
    "iresnet50",
    "load_state_dict_file",
]


class IBasicBlock(nn.Module):
    """BN-conv3×3-BN-PReLU-conv3×3(stride)-BN plus the (projected) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity  # (B, planes, H/stride, W/stride)


class IResNet(nn.Module):
    """(B, 3, 112, 112) RGB in [-1, 1] -> (B, num_features) embedding (not normalised)."""

    def __init__(
        self,
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        num_features: int = 512,
        dropout: float = 0.0,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.num_features = num_features
        stem = widths[0]
        self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=1e-05)
        self.prelu = nn.PReLU(stem)
        inplanes = stem
        for index, (blocks, planes) in enumerate(zip(layers, widths, strict=True), start=1):
            stage = [IBasicBlock(inplanes, planes, stride=2)]
            stage += [IBasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            inplanes = planes
        self.stages = len(layers)
        side = input_size // 2 ** len(layers)
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(inplanes * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.features.weight.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, 64, 112, 112)
        for index in range(1, self.stages + 1):
            x = getattr(self, f"layer{index}")(x)  # layer4: (B, 512, 7, 7)
        x = self.dropout(torch.flatten(self.bn2(x), 1))  # (B, 512·49)
        return self.features(self.fc(x))  # (B, 512)


def iresnet50(*, num_features: int = 512, dropout: float = 0.0) -> IResNet:
    """insightface's iresnet50: stages [3, 4, 14, 3]."""
    return IResNet((3, 4, 14, 3), num_features=num_features, dropout=dropout)


def iresnet18(*, num_features: int = 512, dropout: float = 0.0) -> IResNet:
    """insightface's iresnet18: stages [2, 2, 2, 2] (e.g. a student network)."""
    return IResNet((2, 2, 2, 2), num_features=num_features, dropout=dropout)


def load_state_dict_file(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``.pth`` state dict into ``model`` strictly; a mismatch raises a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or wrong_shape:

        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" … (+{len(items) - 8})" if len(items) > 8 else "")

        problems = []
        if missing:
            problems.append(f"missing keys: {show(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {show(unexpected)}")
        if wrong_shape:
            problems.append(f"shape mismatches: {show(wrong_shape)}")
        raise ValueError(f"{path} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model
