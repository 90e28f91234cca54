"""NbNet-B: a de-convolutional "neighbourly" network from a face vector to a 160×160 face.

Paper: G. Mai, K. Cao, P. C. Yuen, A. K. Jain, "On the Reconstruction of Face Images from
Deep Face Templates", IEEE TPAMI 2019. Architecture and defaults from the authors' code
(https://github.com/csgcmai/NBNet, ``src/symbol_nbnet.py``, ``get_symbol(6,
net_switch='nbnetb')`` as called by ``train_of2img_mae.py``/``train_of2img_percept.py``). No
weights are shipped: the network is trained per recognizer F (``methods/nbnet.py``).

Layout (paper config, D-dimensional vector):

===========  ======================================  ===========  ========
stage        layer                                   channels     size
===========  ======================================  ===========  ========
input        vector as (B, D, 1, 1)                  D            1×1
conv0        5×5 transposed conv (no pad)            256          5×5
block 1      32 layers, growth 8                     256 + 256    5×5
trans 1      BN-ReLU-4×4/2 transposed conv (pad 1)   128          10×10
block 2      16 layers                               128 + 128    10×10
trans 2                                              64           20×20
block 3      8 layers                                64 + 64      20×20
trans 3                                              32           40×40
block 4      4 layers                                32 + 32      40×40
trans 4                                              16           80×80
block 5      2 layers                                16 + 16      80×80
trans 5                                              8            160×160
block 6      1 layer                                 8 + 8        160×160
head         BN-ReLU-1×1 conv, tanh                  3            160×160
===========  ======================================  ===========  ========

Each transposed conv with kernel 4, stride 2, padding 1 doubles the size exactly:
(n − 1)·2 − 2·1 + 4 = 2n. A block's output is the concatenation of its input and every
layer's output (C + L·growth channels); the transition halves the block's *input* width
(256 → 128 → … → 8), as ``n_channels /= 2`` in the original.

Neighbourly connectivity: in the original NbNet-B (``nb_block(..., 'nbnetb')``) layer 0 sees
the block input x and layer i ≥ 1 sees concat(x, output of layer i − 1) — its input and its
nearest neighbour, which is what distinguishes NbNet-B from NbNet-A (``'nbneta'``: layer i
sees only layer i − 1) and from DenseNet (layer i sees x and all earlier outputs). The
default follows the original code; ``connectivity="dense"`` gives the DenseNet reading. The
original also ends with a one-layer block at 160×160 (``num_layer`` halves to 1 in the sixth
block) before the head; kept. All convolutions are bias-free; BN eps is the original's 1e-4
(it passes ``l2_reg`` as eps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["VGG19_RELUS", "NbBlock", "NbNet", "VGG19Features"]

BN_EPS = 1e-4


def _bn_relu_conv(
    in_channels: int, out_channels: int, kernel: int, *, transposed: bool = False
) -> nn.Sequential:
    conv: nn.Module
    if transposed:
        conv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel, stride=2, padding=1, bias=False
        )
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(nn.BatchNorm2d(in_channels, eps=BN_EPS), nn.ReLU(inplace=False), conv)


class NbBlock(nn.Module):
    """A neighbourly block: ``layers`` BN-ReLU-3×3 convs; output = concat(input, all outputs)."""

    def __init__(self, in_channels: int, layers: int, growth: int, connectivity: str) -> None:
        super().__init__()
        if connectivity not in ("nbnetb", "dense"):
            raise ValueError(f"connectivity must be 'nbnetb' or 'dense', not {connectivity!r}")
        self.connectivity = connectivity
        widths = [
            in_channels + (min(i, 1) if connectivity == "nbnetb" else i) * growth
            for i in range(layers)
        ]
        self.layers = nn.ModuleList(_bn_relu_conv(w, growth, 3) for w in widths)
        self.out_channels = in_channels + layers * growth

    def forward(self, x: Tensor) -> Tensor:
        outputs = [x]  # (B, C, H, W), then (B, growth, H, W) each
        for i, layer in enumerate(self.layers):
            if i == 0:
                inputs = x
            elif self.connectivity == "nbnetb":
                inputs = torch.cat([x, outputs[-1]], dim=1)  # (B, C + growth, H, W)
            else:
                inputs = torch.cat(outputs, dim=1)  # (B, C + i·growth, H, W)
            outputs.append(layer(inputs))
        return torch.cat(outputs, dim=1)  # (B, C + L·growth, H, W)


class NbNet(nn.Module):
    """(B, D) vector -> (B, 3, S, S) image in [-1, 1]; S = 5·2^len(block_layers) (160)."""

    def __init__(
        self,
        vector_dim: int,
        *,
        init_channels: int = 256,
        block_layers: Sequence[int] = (32, 16, 8, 4, 2),
        final_block_layers: int = 1,
        growth: int = 8,
        connectivity: str = "nbnetb",
    ) -> None:
        super().__init__()
        self.vector_dim = vector_dim
        self.conv0 = nn.ConvTranspose2d(vector_dim, init_channels, 5, bias=False)
        blocks: list[nn.Module] = []
        channels = init_channels
        for layers in block_layers:
            block = NbBlock(channels, layers, growth, connectivity)
            channels = max(channels // 2, 1)
            blocks.append(block)
            blocks.append(_bn_relu_conv(block.out_channels, channels, 4, transposed=True))
        last = NbBlock(channels, final_block_layers, growth, connectivity)
        blocks.append(last)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(last.out_channels, eps=BN_EPS),
            nn.ReLU(),
            nn.Conv2d(last.out_channels, 3, 1, bias=False),
            nn.Tanh(),
        )
        self.output_size = 5 * 2 ** len(block_layers)
        for m in self.modules():
            # The original initialises every weight with N(0, 0.02) (mx.init.Normal(0.02)).
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, vectors: Tensor) -> Tensor:
        x = vectors.reshape(len(vectors), -1, 1, 1)  # (B, D, 1, 1)
        x = self.conv0(x)  # (B, 256, 5, 5)
        x = self.blocks(x)  # (B, 16, 160, 160)
        return self.head(x)  # (B, 3, 160, 160)


# VGG-19 "features" up to each named ReLU, in torchvision's layer numbering (conv i is
# features.<index>), so a torchvision ``vgg19`` state dict loads without renaming.
VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
    512, 512, 512, 512,
)  # fmt: skip
VGG19_RELUS = [
    "relu1_1",
    "relu1_2",
    "relu2_1",
    "relu2_2",
    "relu3_1",
    "relu3_2",
    "relu3_3",
    "relu3_4",
    "relu4_1",
    "relu4_2",
    "relu4_3",
    "relu4_4",
    "relu5_1",
    "relu5_2",
    "relu5_3",
    "relu5_4",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG-19 (Simonyan & Zisserman 2015) convolutional trunk cut after ``layer``.

    The perceptual loss of NbNet's ``train_of2img_percept.py`` uses VGG-19's relu3_2. Input:
    (B, 3, H, W) in [-1, 1]; it is mapped to [0, 1] and normalised with the ImageNet mean and
    std that torchvision's VGG weights expect. Weights: a user-provided state dict with
    torchvision's key names (``features.<i>.weight``/``.bias``; classifier keys are ignored).
    Departure: the original's descriptor (``symbol_perceptual.py``, after neural-style) uses
    average pooling and feeds the [-1, 1] image as is; here torchvision's max pooling and
    input normalisation, which the supplied weights were trained with.
    """

    def __init__(self, layer: str = "relu3_2") -> None:
        super().__init__()
        if layer not in VGG19_RELUS:
            raise ValueError(f"unknown VGG-19 layer {layer!r}; known: {', '.join(VGG19_RELUS)}")
        keep = VGG19_RELUS.index(layer) + 1
        layers: list[nn.Module] = []
        channels, convs = 3, 0
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
            channels, convs = int(item), convs + 1
            if convs == keep:
                break
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))

    def load_vgg19(self, path: str) -> VGG19Features:
        """Load the needed ``features.*`` tensors from a VGG-19 state dict (strict on them)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = self.features.state_dict()
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
        missing = [k for k in expected if k not in state]
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or wrong:
            raise ValueError(
                f"{path} is not a VGG-19 state dict with torchvision key names "
                f"(missing: {missing[:4]}, wrong shape: {wrong[:4]})"
            )
        self.features.load_state_dict({k: state[k] for k in expected})
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = ((images + 1) / 2 - self.mean) / self.std  # (B, 3, H, W), ImageNet-normalised
        return self.features(x)  # relu3_2: (B, 256, H/4, W/4)
