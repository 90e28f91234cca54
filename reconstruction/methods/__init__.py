"""FVR methods: a registry from name to ``Method(config class, reconstruct function)``.

Each method module documents its paper, defaults and departures; ``base.py`` holds the
shared result type and the signature of ``run``. Parametric methods register here the same
way (their ``run`` takes trained weights as ``artifact``).
"""

from __future__ import annotations

from reconstruction.methods.base import Method, ReconstructionResult, config_from_preset
from reconstruction.methods.eigenfaces import EigenfacesConfig
from reconstruction.methods.eigenfaces import reconstruct as eigenfaces_reconstruct

__all__ = ["METHODS", "Method", "ReconstructionResult", "config_from_preset", "get_method"]

METHODS: dict[str, Method] = {
    "eigenfaces": Method(EigenfacesConfig, eigenfaces_reconstruct),
}


def get_method(name: str) -> Method:
    """The registry entry for ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]
