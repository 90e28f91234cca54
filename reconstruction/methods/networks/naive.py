"""The "naive" reconstructor: a CNN of stacked, inverted (up-sampling) ResNet blocks.

Paper: the study's "Naive" method (Wenger et al. 2022, § IV, ref. [20], Guo et al.), which
the study re-created "from the authors' detailed instructions"; no code was published. The
layout here is the one the project's design fixes (``DESIGN.md``, "FVR methods"): a linear
layer to 512×7×7, then four up-sampling stages — a 4×4 stride-2 transposed convolution
followed by two pre-activation residual blocks (He et al. 2016, "Identity Mappings in Deep
Residual Networks": BN-ReLU-3×3 conv, twice, plus the identity) — with 256, 128, 64 and 32
channels (7 → 14 → 28 → 56 → 112), and a BN-ReLU-3×3 conv to RGB with tanh. No weights
are shipped: it is trained per recognizer F (``methods/naive.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["NaiveDecoder", "PreActBlock"]


class PreActBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)  # (B, C, H, W)


class NaiveDecoder(nn.Module):
    """(B, D) vector -> (B, 3, 112, 112) image in [-1, 1]."""

    def __init__(
        self,
        vector_dim: int,
        *,
        base_channels: int = 512,
        stage_channels: Sequence[int] = (256, 128, 64, 32),
        blocks_per_stage: int = 2,
        base_size: int = 7,
    ) -> None:
        super().__init__()
        self.base_channels = base_channels
        self.base_size = base_size
        self.fc = nn.Linear(vector_dim, base_channels * base_size * base_size)
        stages: list[nn.Module] = []
        channels = base_channels
        for out in stage_channels:
            stages.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1, bias=False))
            stages.extend(PreActBlock(out) for _ in range(blocks_per_stage))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 3, 3, padding=1), nn.Tanh()
        )
        self.output_size = base_size * 2 ** len(stage_channels)

    def forward(self, vectors: Tensor) -> Tensor:
        x = self.fc(vectors)  # (B, 512·7·7)
        x = x.reshape(len(vectors), self.base_channels, self.base_size, self.base_size)
        x = self.stages(x)  # (B, 32, 112, 112)
        return self.head(x)  # (B, 3, 112, 112)
