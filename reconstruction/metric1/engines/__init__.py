"""Commercial face recognition engines as F' for Metric 1: one adapter file per engine.

An engine enrols a gallery of labelled face images (one collection per gallery), answers
top-K searches with a similarity threshold, and deletes what it created. `ENGINES` maps a
name to the adapter's constructor (imported lazily: boto3 is needed only to use
Rekognition). `evaluate_topk --engine NAME` (`metric1.engine_runs.topk_evaluate_engine`) drives
any adapter: it plans, enrols one gallery, searches each query once and scores every K.

Adding an engine (e.g. Azure Face, whose identification API needs Microsoft's approval) is
one file and one registry line:

1. ``reconstruction/metric1/engines/azure.py``: a class with ``name``, ``max_k`` (the most results
   one search may return), ``default_threshold`` (the vendor's own default similarity
   threshold, used unless the user sets one), ``retries`` (throttled calls retried so far)
   and the four
   methods of `Engine`; its constructor takes keyword ``collection_id`` (the gallery's
   container: a Rekognition collection, an Azure large person group) and ``region``.
   ``enrol`` must be resumable (skip images whose key is already enrolled) and, with
   ``strict``, refuse a container holding faces of other images; ``search`` returns
   `SearchResult(no_face=True)` for a query without a face (a "no match"); user-fixable
   problems (missing credentials, a foreign container) raise `EngineError`.
2. ``ENGINES["azure"] = _azure`` below, with ``_azure`` importing the class lazily.

`tests/reconstruction/test_rekognition.py` and `test_evaluate_topk_engine.py` show how to
test an adapter against its real client with recorded responses.

Paper defaults for an engine run (Wenger et al. §V, "Commercial systems"): N = 5000 enrolled
identities plus the identities of every reconstruction tested, K = 5, and the system's own
threshold ("both systems only return a match when the similarity score exceeds an
unspecified threshold"): `PAPER_ENGINE_N`, `PAPER_ENGINE_K` and each adapter's
``default_threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ENGINES",
    "PAPER_ENGINE_K",
    "PAPER_ENGINE_N",
    "CallPlan",
    "Engine",
    "EngineError",
    "EnrolSummary",
    "GalleryImage",
    "Match",
    "SearchResult",
    "get_engine",
    "ranked_matrix",
]


PAPER_ENGINE_N = 5000  # identities enrolled (500 FaceScrub + 4500 VGGFace2 in the paper)
PAPER_ENGINE_K = 5  # "We set K = 5 (max)"


class EngineError(Exception):
    """A problem the user can fix (credentials, region, a collection of another gallery)."""


@dataclass(frozen=True)
class GalleryImage:
    """One image to enrol: who it shows, a stable key, and the encoded photo (JPEG/PNG)."""

    identity: str
    key: str  # e.g. the FaceImage id: what makes enrolment resumable
    data: bytes


@dataclass(frozen=True)
class Match:
    """One returned gallery face, best first."""

    identity: str
    key: str
    similarity: float  # the engine's own scale (Rekognition: 0–100)


@dataclass(frozen=True)
class SearchResult:
    """An engine's answer to one query; ``no_face``: it found no face in the query."""

    matches: tuple[Match, ...] = ()
    no_face: bool = False


@dataclass
class EnrolSummary:
    """What one `enrol` call did (``skipped``: already in the collection)."""

    indexed: int = 0
    skipped: int = 0
    no_face: list[str] = field(default_factory=list)  # keys of images without a face
    calls: int = 0


@dataclass(frozen=True)
class CallPlan:
    """API calls a run would send, and what they would cost."""

    calls: dict[str, int]
    price_per_1000: float
    billed: tuple[str, ...]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def cost(self) -> float:
        """Estimated cost in USD of the billed calls."""
        return sum(self.calls.get(name, 0) for name in self.billed) * self.price_per_1000 / 1000

    def describe(self) -> str:
        parts = ", ".join(f"{name} × {count}" for name, count in self.calls.items())
        return (
            f"{self.total_calls} API calls ({parts}); estimated cost ${self.cost:.2f} at "
            f"${self.price_per_1000:.2f} per 1000 billed calls ({', '.join(self.billed)})"
        )


class Engine(Protocol):
    """What Metric 1 needs from a commercial engine."""

    name: str
    max_k: int  # the most matches one search may return
    default_threshold: float  # the vendor's default similarity threshold, on its own scale
    retries: int  # throttled calls retried so far

    def plan(self, *, gallery: int, queries: int) -> CallPlan: ...

    def enrol(self, images: Iterable[GalleryImage], *, strict: bool = False) -> EnrolSummary: ...

    def search(self, image: bytes, *, k: int, threshold: float) -> SearchResult: ...

    def cleanup(self) -> None: ...


def ranked_matrix(
    results: Sequence[SearchResult], labels: dict[str, int], *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) identity labels (-1 padded) and similarities of engine answers, for
    `metric1.outcomes_from_ranked` (a query without a face has no matches: "no match")."""
    out_labels = np.full((len(results), k), -1, dtype=np.int64)
    out_scores = np.full((len(results), k), -np.inf, dtype=np.float64)
    for row, result in enumerate(results):
        for column, match in enumerate(result.matches[:k]):
            out_labels[row, column] = labels.get(match.identity, -1)
            out_scores[row, column] = match.similarity
    return out_labels, out_scores


def _rekognition(**options: Any) -> Engine:
    from reconstruction.metric1.engines.rekognition import RekognitionEngine

    return RekognitionEngine(**options)


ENGINES: dict[str, Callable[..., Engine]] = {"rekognition": _rekognition}


def get_engine(name: str, **options: Any) -> Engine:
    """A new adapter of engine ``name`` (options go to its constructor)."""
    if name not in ENGINES:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](**options)
