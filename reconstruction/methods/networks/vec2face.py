"""Vec2Face generator and critic: Progressive-GAN networks conditioned on a face vector.

Paper: C. N. Duong, T.-D. Truong, K. Luu, K. G. Quach, H. Bui, K. Roy, "Vec2Face: Unveil
Human Faces from their Blackbox Features in Face Recognition", CVPR 2020. No code was
published; like the study (Wenger et al. 2022, § IV) the networks follow the official
Progressive GAN (Karras et al., ICLR 2018, ``tkarras/progressive_growing_of_gans``
``networks.py`` ``G_paper``/``D_paper``), whose defaults are used: feature maps
``min(fmap_base / 2^stage, fmap_max)`` with fmap_base 8192 and fmap_max 512 (512 channels up
to 32×32, 256 at 64×64, 128 at 128×128), leaky ReLU 0.2, pixel norm after every generator
conv, equalised learning rate everywhere, nearest-neighbour up-sampling, average-pool
down-sampling, a linear 1×1 toRGB, and the minibatch-stddev feature (group 4) before the
critic's last 4×4 block. The latent is the L2-normalised face vector (pixel-normalised like
PGGAN's latent), so the generator is a deterministic function of the vector.

Departure: progressive growing is not used — both networks are built at their final
resolution (128×128) and trained at it, with the same layers the grown networks end with.
The generator's 128×128 output is resized (bilinear, antialiased) to ``output_size`` (112,
the ArcFace crop). No weights are shipped: trained per recognizer F (``methods/vec2face.py``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.methods.networks.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
)

__all__ = ["Vec2FaceCritic", "Vec2FaceGenerator", "feature_maps"]


def feature_maps(stage: int, fmap_base: int, fmap_max: int) -> int:
    """PGGAN's ``nf(stage)``: channels at resolution 2^(stage + 1)."""
    return min(int(fmap_base / 2.0**stage), fmap_max)


def _stages(resolution: int) -> int:
    stages = int(math.log2(resolution))
    if 2**stages != resolution or resolution < 4:
        raise ValueError(f"resolution must be a power of two ≥ 4, not {resolution}")
    return stages


class Vec2FaceGenerator(nn.Module):
    """(B, D) vector -> (B, 3, output_size, output_size) image (about [-1, 1], not clamped)."""

    def __init__(
        self,
        vector_dim: int,
        *,
        resolution: int = 128,
        output_size: int = 112,
        fmap_base: int = 8192,
        fmap_max: int = 512,
    ) -> None:
        super().__init__()
        stages = _stages(resolution)
        self.resolution = resolution
        self.output_size = output_size
        c = feature_maps(1, fmap_base, fmap_max)
        self.norm = PixelNorm()
        # PGGAN's first dense layer uses gain √2/4 (it feeds a 4×4 map).
        self.dense = EqualizedLinear(vector_dim, c * 16, gain=math.sqrt(2.0) / 4)
        self.channels0 = c
        self.conv0 = EqualizedConv2d(c, c, 3)
        self.blocks = nn.ModuleList()
        for stage in range(2, stages):
            out = feature_maps(stage, fmap_base, fmap_max)
            self.blocks.append(
                nn.ModuleList([EqualizedConv2d(c, out, 3), EqualizedConv2d(out, out, 3)])
            )
            c = out
        self.to_rgb = EqualizedConv2d(c, 3, 1, gain=1.0)

    def _act(self, x: Tensor) -> Tensor:
        return self.norm(F.leaky_relu(x, 0.2))

    def forward(self, vectors: Tensor) -> Tensor:
        z = self.norm(F.normalize(vectors, dim=1))  # (B, D), unit mean square
        x = self._act(self.dense(z)).reshape(len(z), self.channels0, 4, 4)  # (B, 512, 4, 4)
        x = self._act(self.conv0(x))
        for conv_a, conv_b in self.blocks:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 2H, 2W)
            x = self._act(conv_b(self._act(conv_a(x))))
        x = self.to_rgb(x)  # (B, 3, 128, 128)
        if self.output_size != self.resolution:
            x = F.interpolate(
                x, size=self.output_size, mode="bilinear", align_corners=False, antialias=True
            )
        return x  # (B, 3, 112, 112)


class Vec2FaceCritic(nn.Module):
    """WGAN-GP critic: (B, 3, R, R) image (resized to R if needed) -> (B,) scores."""

    def __init__(
        self,
        *,
        resolution: int = 128,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        mbstd_group_size: int = 4,
    ) -> None:
        super().__init__()
        stages = _stages(resolution)
        self.resolution = resolution
        c = feature_maps(stages - 1, fmap_base, fmap_max)
        self.from_rgb = EqualizedConv2d(3, c, 1)
        self.blocks = nn.ModuleList()
        for stage in range(stages - 1, 1, -1):
            out = feature_maps(stage - 1, fmap_base, fmap_max)
            self.blocks.append(
                nn.ModuleList([EqualizedConv2d(c, c, 3), EqualizedConv2d(c, out, 3)])
            )
            c = out
        self.mbstd = MinibatchStdDev(mbstd_group_size)
        self.conv = EqualizedConv2d(c + 1, c, 3)
        self.dense0 = EqualizedLinear(c * 16, feature_maps(0, fmap_base, fmap_max))
        self.dense1 = EqualizedLinear(feature_maps(0, fmap_base, fmap_max), 1, gain=1.0)

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[-1] != self.resolution:
            images = F.interpolate(
                images, size=self.resolution, mode="bilinear", align_corners=False
            )  # (B, 3, 128, 128)
        x = F.leaky_relu(self.from_rgb(images), 0.2)
        for conv_a, conv_b in self.blocks:
            x = F.leaky_relu(conv_b(F.leaky_relu(conv_a(x), 0.2)), 0.2)
            x = F.avg_pool2d(x, 2)  # (B, C', H/2, W/2)
        x = self.mbstd(x)  # (B, C + 1, 4, 4)
        x = F.leaky_relu(self.conv(x), 0.2)
        x = F.leaky_relu(self.dense0(x.flatten(1)), 0.2)  # (B, 512)
        return self.dense1(x).squeeze(1)  # (B,)
