"""The frozen networks whose gradients train NBNet's perceptual loss and Vec2Face's identity
loss, and the black-box rule that keeps F itself out of them.

Threat model (Wenger et al. 2022, § III): the attacker has *black-box* access to F — it may
send images to F and read the vectors, never use F's weights or gradients. A training loss
that back-propagates through F is white-box access, which the study excludes. So:

- NBNet's perceptual loss uses VGG-19 (the original code's network) when the user supplies
  its weights; otherwise a registered differentiable recognizer other than F
  (:func:`second_recognizer`: mobileface, or faceres when F is mobileface).
- Vec2Face's identity loss uses, by default, a *student* of F: a network trained to give F's
  vectors for the reconstructor's training faces, i.e. from F's answers to queries — the way
  Vec2Face itself handles a black-box F. Another recognizer H may be named instead (the loss
  then compares H's features of the reconstruction and of the real face).

Naming F itself as the feature network raises :class:`WhiteBoxError` unless the caller allows
white-box access (``allow_white_box`` in the method's config, ``--allow-white-box`` on
``train_reconstructor``); the trained artifact records the network used and whether it was F.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = [
    "PREFERRED",
    "STUDENT",
    "FeatureNetwork",
    "WhiteBoxError",
    "check_black_box",
    "differentiable_recognizer",
    "second_recognizer",
]

STUDENT = "student"  # Vec2Face: a network trained on F's answers to queries
PREFERRED = ("mobileface", "faceres")  # cheapest first: 112 px input before 224 px


class WhiteBoxError(ValueError):
    """F itself was named as a training loss's feature network without allowing white-box."""


@dataclass(frozen=True)
class FeatureNetwork:
    """A frozen feature network for a training loss, with what provenance records of it."""

    module: nn.Module  # [-1, 1] images (B, 3, H, W) -> features
    source: str  # e.g. "recognizer:faceres", "student-of:dlib-resnet", "vgg19:relu3_2:<file>"
    white_box: bool  # True when it is F itself (F's gradients train the reconstructor)
    in_f_space: bool  # outputs are F's vectors (F or a student of F): compare them with v


def differentiable_recognizer(name: str) -> bool:
    """Whether registered recognizer ``name`` exposes a differentiable torch ``network()``."""
    from reconstruction.recognizers.registry import get_recognizer

    return bool(getattr(get_recognizer(name), "differentiable", False))


def second_recognizer(recognizer: str) -> str:
    """The default feature network when F = ``recognizer``: the first differentiable
    registered recognizer that is not F (mobileface, else faceres, else any other)."""
    from reconstruction.recognizers.registry import RECOGNIZERS

    candidates = [*PREFERRED, *sorted(set(RECOGNIZERS) - set(PREFERRED))]
    for name in candidates:
        if name != recognizer and name in RECOGNIZERS and differentiable_recognizer(name):
            return name
    raise ValueError(f"no differentiable recognizer other than F ({recognizer!r}) is registered")


def check_black_box(
    network: str, recognizer: str, *, role: str, allow_white_box: bool, instead: str
) -> bool:
    """Refuse F itself as ``role``'s feature network unless ``allow_white_box``; returns
    whether the network is F (white-box). ``instead`` names the black-box alternatives."""
    if network != recognizer:
        return False
    if not allow_white_box:
        raise WhiteBoxError(
            f"{role} network {network!r} is F itself: training through F's gradients is "
            "white-box access, which the paper's threat model (black-box F, § III) excludes. "
            f"Use {instead}, or pass --allow-white-box (config allow_white_box=True) to "
            "accept white-box access knowingly."
        )
    return True
