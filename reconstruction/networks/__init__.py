"""Torch networks, one file per family: a registry from name to module class or constructor.

Face recognizers that F or F' can be: `iresnet` (insightface's ArcFace backbones) and
`efficientnet` (EfficientNet-B0 face backbone); TF.js graph models run by `tfjs_graph`.
Reconstruction networks: `nbnet` (NbNet-B), `naive` (Guo et al.), `vec2face` (Duong et al.).
Each file's docstring names its paper, the source of its defaults and where weights come from.
"""

from collections.abc import Callable

from torch import nn

from reconstruction.networks.efficientnet import efficientnet_b0_face
from reconstruction.networks.iresnet import iresnet18, iresnet50
from reconstruction.networks.naive import NaiveDecoder
from reconstruction.networks.nbnet import NbNet
from reconstruction.networks.vec2face import Vec2FaceCritic, Vec2FaceGenerator

NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "iresnet18": iresnet18,
    "iresnet50": iresnet50,
    "efficientnet-b0-face": efficientnet_b0_face,
    "nbnet": NbNet,
    "naive": NaiveDecoder,
    "vec2face-generator": Vec2FaceGenerator,
    "vec2face-critic": Vec2FaceCritic,
}
