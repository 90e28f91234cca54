"""FVR methods: a registry from name to ``Method(config class, reconstruct function)``.

Each method module documents its paper, defaults and departures; ``base.py`` holds the
shared result type and the signature of ``run``. The parametric methods (NBNet, Naive,
Vec2Face) register the same way through ``parametric.py``: their ``run`` takes the trained
weights as ``artifact``; ``PARAMETRIC`` names them (``parametric.MODULES``'s keys;
``reconstructor_training.reconstructor_train`` trains them, ``services`` runs every method).
``feature_networks.py`` holds the black-box rule for the networks whose gradients train NBNet's
perceptual and Vec2Face's identity losses (never F itself unless white-box is allowed).
"""

from __future__ import annotations

from reconstruction.methods.base import Method, ReconstructionResult, config_from_preset
from reconstruction.methods.eigenfaces import EigenfacesConfig
from reconstruction.methods.eigenfaces import reconstruct as eigenfaces_reconstruct
from reconstruction.methods.parametric import CONFIGS, MODULES, RUNS

__all__ = [
    "METHODS",
    "PARAMETRIC",
    "Method",
    "ReconstructionResult",
    "config_from_preset",
    "get_method",
]

METHODS: dict[str, Method] = {
    "eigenfaces": Method(EigenfacesConfig, eigenfaces_reconstruct),
    **{name: Method(CONFIGS[name], RUNS[name]) for name in MODULES},  # nbnet, naive, vec2face
}
PARAMETRIC = frozenset(MODULES)  # trained weights, not a search


def get_method(name: str) -> Method:
    """The registry entry for ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]
