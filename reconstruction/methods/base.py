"""What every FVR method returns, and the signature its ``reconstruct`` function follows.

A method is registered in ``reconstruction.methods.METHODS`` as ``name → Method(config, run)``:
``config`` is its frozen config dataclass (defaults = the paper's settings, plus a ``tiny()``
preset) and ``run`` has the keyword-only signature of :class:`ReconstructFn`. ``artifact`` is
whatever the method needs besides F and the target vector: the eigenbasis file for Eigenfaces,
trained weights for the parametric methods (a path, or the already loaded object).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["Method", "ReconstructFn", "ReconstructionResult", "config_from_preset"]


@dataclass
class ReconstructionResult:
    """One reconstructed face and what it cost."""

    image: np.ndarray  # (112, 112, 3) uint8 RGB, aligned like the targets
    cosine: float  # cos(F(image as stored, uint8), target vector)
    queries: int  # images sent through F, the final check included
    seconds: float  # wall time of the run (all sessions, when resumed)
    forward_seconds: float  # of which inside F's forward pass
    details: dict[str, Any] = field(default_factory=dict)  # method-specific trace

    @property
    def forward_share(self) -> float:
        """Share of the wall time spent in F's forward pass."""
        return self.forward_seconds / self.seconds if self.seconds > 0 else 0.0


class ReconstructFn(Protocol):
    def __call__(
        self,
        *,
        target: np.ndarray,  # (D,) F's vector of the target face
        recognizer: Any,  # a reconstruction.recognizers.registry.Recognizer
        artifact: Any,
        config: Any,
        seed: int,
        device: str,
        progress: bool = True,
        checkpoint: Path | None = None,
    ) -> ReconstructionResult: ...


class Method(NamedTuple):
    """A registry entry: the config class and the reconstruct function."""

    config: type
    run: ReconstructFn


def config_from_preset(config_class: type, preset: str) -> Any:
    """``paper`` → the defaults; ``tiny`` → ``config_class.tiny()``."""
    if preset == "paper":
        return config_class()
    if preset == "tiny":
        return config_class.tiny()
    raise ValueError(f"unknown preset {preset!r}: use paper or tiny")
