"""The registry of torch face backbones (name → constructor), trained by ``arcface``.

``arcface-r50``: insightface's IResNet-50 (``iresnet.py``); ``arcface-effnet``: an
EfficientNet-B0 face backbone (``efficientnet.py``). No weights ship with this project:
``load_backbone`` reads a user's (or ``train_extractor``'s) state-dict file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from reconstruction.recognizers.backbones.efficientnet import efficientnet_b0_face
from reconstruction.recognizers.backbones.iresnet import iresnet50, load_state_dict_file
from reconstruction.training import DeviceLike, resolve_device

__all__ = ["BACKBONES", "build_backbone", "load_backbone"]

BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "arcface-r50": iresnet50,
    "arcface-effnet": efficientnet_b0_face,
}


def build_backbone(name: str) -> nn.Module:
    """An untrained backbone by recognizer name."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]()


def load_backbone(name: str, path: str | Path, device: DeviceLike = "cpu") -> nn.Module:
    """Backbone ``name`` with the user's state dict at ``path`` (strict), in eval mode."""
    model = load_state_dict_file(build_backbone(name), path)
    return model.to(resolve_device(device)).eval()
