"""EfficientNet-B0 face backbone ("Efficient" in the study) for 112×112 aligned faces.

Paper: M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019 — the B0 stages of its Table 1 (MBConv1 k3 16; MBConv6 k3 24 ×2;
MBConv6 k5 40 ×2; MBConv6 k3 80 ×3; MBConv6 k5 112 ×3; MBConv6 k5 192 ×4; MBConv6 k3 320),
squeeze-and-excitation ratio 0.25 of the block input, SiLU, BN momentum/eps as in the
reference TF code (0.01 / 1e-3). The study (Wenger et al. 2022, § IV) trained it on MS1M
with the ArcFace loss; as for face ResNets (insightface), the stem has stride 1 so a
112×112 input ends at 7×7 (strides 2 in the 24, 40, 80 and 192 stages), a 1×1 conv widens to
1280, and the head is insightface's: BN2d → dropout → FC(1280·7·7 → 512) → BN1d. Drop-path
is omitted (its rate is a training detail; dropout is in the head).

Weights: none shipped. ``iresnet.load_state_dict_file`` loads a user ``.pth`` state dict
strictly. Parameter names are this module's own (``stem``, ``blocks.i.j``, ``conv_head``,
``bn2``, ``dropout``, ``fc``, ``features``): there is no single public face EfficientNet
whose key names could be matched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["B0_STAGES", "EfficientNetFace", "MBConv", "efficientnet_b0_face"]

# (expand ratio, kernel, stride, output channels, repeats); the stem's stride is 1 here.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN = {"eps": 1e-3, "momentum": 0.01}


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise → squeeze-excite → 1×1 project (+x)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, expand: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [
                nn.Conv2d(in_channels, mid, 1, bias=False),
                nn.BatchNorm2d(mid, **BN),
                nn.SiLU(),
            ]
        layers += [
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid, **BN),
            nn.SiLU(),
        ]
        self.expand_dw = nn.Sequential(*layers)
        squeezed = max(1, int(in_channels * 0.25))
        self.se_reduce = nn.Conv2d(mid, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, mid, 1)
        self.project = nn.Sequential(
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, **BN)
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h = self.expand_dw(x)  # (B, mid, H/s, W/s)
        s = h.mean(dim=(2, 3), keepdim=True)  # (B, mid, 1, 1)
        h = h * torch.sigmoid(self.se_expand(nn.functional.silu(self.se_reduce(s))))
        h = self.project(h)  # (B, out, H/s, W/s)
        return x + h if self.residual else h


class EfficientNetFace(nn.Module):
    """(B, 3, 112, 112) RGB in [-1, 1] -> (B, num_features) embedding (not normalised)."""

    def __init__(
        self,
        *,
        stages: tuple[tuple[int, int, int, int, int], ...] = B0_STAGES,
        stem_channels: int = 32,
        head_channels: int = 1280,
        num_features: int = 512,
        dropout: float = 0.2,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.num_features = num_features
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_channels, **BN),
            nn.SiLU(),
        )
        blocks: list[nn.Module] = []
        channels = stem_channels
        reduction = 1
        for expand, kernel, stride, out, repeats in stages:
            stage = []
            for i in range(repeats):
                stride_i = stride if i == 0 else 1
                stage.append(MBConv(channels, out, expand=expand, kernel=kernel, stride=stride_i))
                channels = out
            reduction *= stride
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Sequential(
            nn.Conv2d(channels, head_channels, 1, bias=False),
            nn.BatchNorm2d(head_channels, **BN),
            nn.SiLU(),
        )
        side = math.ceil(input_size / reduction)
        self.bn2 = nn.BatchNorm2d(head_channels, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(head_channels * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32, 112, 112)
        x = self.blocks(x)  # (B, 320, 7, 7)
        x = self.conv_head(x)  # (B, 1280, 7, 7)
        x = self.dropout(torch.flatten(self.bn2(x), 1))  # (B, 1280·49)
        return self.features(self.fc(x))  # (B, 512)


def efficientnet_b0_face(*, num_features: int = 512, dropout: float = 0.2) -> EfficientNetFace:
    """EfficientNet-B0 with a stride-1 stem and insightface's BN-dropout-FC-BN head."""
    return EfficientNetFace(num_features=num_features, dropout=dropout)
