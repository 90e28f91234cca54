"""Small layers shared by the reconstruction networks.

Progressive-GAN layers (Karras et al., "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", ICLR 2018; defaults from the official ``tkarras/progressive_growing_
of_gans`` ``networks.py``): pixelwise feature normalisation, the equalised learning rate
(weights stored as N(0, 1) and scaled at run time by He's constant ``gain / sqrt(fan_in)``)
and the minibatch standard-deviation feature. No weights are shipped: these layers are
trained from scratch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStdDev",
    "PixelNorm",
    "count_parameters",
]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) in ``module``."""
    return sum(p.numel() for p in module.parameters())


class PixelNorm(nn.Module):
    """Scale each pixel's feature vector to unit mean square: x / sqrt(mean_c(x²) + eps)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, ...) -> (B, C, ...), normalised over dim 1
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class EqualizedLinear(nn.Module):
    """Linear layer with the equalised learning rate: y = x (w·c)ᵀ + b, c = gain/√fan_in."""

    def __init__(
        self, in_features: int, out_features: int, *, gain: float = math.sqrt(2.0)
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)  # (B, out)


class EqualizedConv2d(nn.Module):
    """2-D convolution with the equalised learning rate (same padding for odd kernels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int | None = None,
        gain: float = math.sqrt(2.0),
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class MinibatchStdDev(nn.Module):
    """Append one feature map: the std over groups of samples, averaged over C, H and W.

    As in the official implementation: the batch is split into groups of ``group_size``
    (the batch size must be divisible by the group size, or smaller than it), each feature's
    standard deviation (biased, +1e-8 under the root) is taken within the group, averaged over
    channels and pixels, and broadcast as an extra channel to every member of the group.
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        if b % g:
            raise ValueError(f"batch size {b} is not divisible by the group size {g}")
        y = x.reshape(g, b // g, c, h, w)  # (G, M, C, H, W); sample i is in group i % M
        y = y - y.mean(dim=0, keepdim=True)
        y = torch.sqrt(y.pow(2).mean(dim=0) + 1e-8)  # (M, C, H, W)
        y = y.mean(dim=(1, 2, 3))  # (M,)
        y = y.reshape(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, y], dim=1)  # (B, C + 1, H, W)
