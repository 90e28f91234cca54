"""Recognizer observers for the survey's bots: a third recognizer looks at a question's images.

The survey holds the observer protocol and its registry (`survey.bots.observers`); this app
registers one observer per recognizer there from `ReconstructionConfig.ready`, with a lazy
factory: torch and dlib are imported only when such an observer is created, and without
them (the base install) choosing one fails with a message naming the ``ml`` extra.

A recognizer observer (``dlib-resnet``, the survey's default; any name in
``reconstruction.recognizers.registry.RECOGNIZERS``) embeds the query image and each
candidate image (as fetched over HTTP) with that recognizer — a third recognizer, neither
F nor F' of a real study — and takes cosine similarities s_1 … s_K, which the survey's
softmax rule (`survey.bots.observers.softmax_decide`) turns into a pick and a confidence.
A query that is a reconstruction (a match set made by build_study, whose provenance names
its reconstruction; `study_prepare` reads which query images these are, as the researcher
knows them) is a square image in the ArcFace frame and is embedded through
`reconstruction.recognizers.registry.reconstruction_embed`, the view Metric 1 and
build_study use (dlib: the chip cut with the fixed mean dlib shape). In any other image
(candidate photos, the real-photo queries of `reconstruction.studies.demo.demo_study_create`)
the face is found with dlib's HOG detector and cut the way the recognizer expects (dlib:
``get_face_chip`` 150 px, padding 0.25; others: the ArcFace 5-point template); a photo
without a detected face is embedded whole. Each image is embedded once per run (cache keyed
by URL without its query string, so presigned URLs share an entry).
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from survey.bots import (
    BotError,
    Decision,
    ObserverParams,
    observer_register,
    softmax_decide,
)

# The names of `reconstruction.recognizers.registry.RECOGNIZERS` (the recognizers usable
# without a weights file), listed here because that registry imports torch and the
# observers are registered at start-up; tests/reconstruction/test_observers.py keeps the
# two equal.
RECOGNIZER_OBSERVERS = ("dlib-resnet", "faceres", "mobileface")


class EmbeddingCache:
    """Embeddings by image URL (query string dropped), shared by every bot of a run."""

    def __init__(self, recognizer: str) -> None:
        self.recognizer = recognizer
        self._vectors: dict[str, Any] = {}
        self._lock = threading.Lock()  # dlib's models are not known to be thread-safe
        self.computed = 0
        self.no_face = 0

    @staticmethod
    def key(url: str) -> str:
        """The cache key of an image URL: the URL without its query string."""
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    def vector(self, url: str, fetch: Callable[[], bytes], *, reconstruction: bool = False) -> Any:
        """The image's embedding, computed on first sight (`fetch` gives its bytes);
        ``reconstruction``: the image is a reconstruction (a question's query), seen through
        `reconstruction.recognizers.registry.reconstruction_view`, else a photo."""
        key = self.key(url)
        found = self._vectors.get(key)
        if found is not None:
            return found
        data = fetch()
        with self._lock:
            if key not in self._vectors:
                self._vectors[key] = self._embed(data, reconstruction=reconstruction)
                self.computed += 1
            return self._vectors[key]

    def _embed(self, data: bytes, *, reconstruction: bool) -> Any:
        # Imported here: Django imports this module at start-up, which never imports torch.
        from reconstruction.recognizers.registry import get_recognizer, reconstruction_embed

        if reconstruction:
            return reconstruction_embed(self.recognizer, self._square(data)[None])[0]
        crop = self._face_crop(data)
        return get_recognizer(self.recognizer).embed(crop[None])[0]

    @staticmethod
    def _decode(data: bytes) -> Any:
        from reconstruction.faces import alignment

        try:
            return alignment.decode_rgb(data)
        except alignment.UnreadableImageError as exc:
            raise BotError(f"the observer cannot read an image: {exc}") from exc

    def _square(self, data: bytes) -> Any:
        """A reconstruction's pixels, centre-cropped to a square (the survey serves squares)."""
        import numpy as np

        pixels = self._decode(data)
        height, width = pixels.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return np.ascontiguousarray(pixels[top : top + side, left : left + side])

    def _face_crop(self, data: bytes) -> Any:
        import numpy as np

        from reconstruction.faces import alignment

        pixels = self._decode(data)
        if self.recognizer == "dlib-resnet":
            detections = alignment.detect_faces(pixels)
            if not detections:
                self.no_face += 1
                return np.ascontiguousarray(pixels)
            height, width = pixels.shape[:2]
            chosen = alignment.central_face(detections, width, height)
            points = alignment.shape_points(pixels, chosen.box, points=5)
            return alignment.dlib_chip(pixels, chosen.box, points)
        result = alignment.align_face(pixels)
        if result.face is None:
            self.no_face += 1
            return np.ascontiguousarray(pixels)
        return result.face.aligned


class RecognizerObserver:
    """An observer that scores the candidates by a recognizer's cosine similarity to the query
    (`survey.bots.observers.Observer`)."""

    def __init__(self, name: str, params: ObserverParams) -> None:
        self.name = name
        self.params = params
        self.cache = EmbeddingCache(name)
        # URL paths of query images that are reconstructions (`reconstruction_query_paths`).
        self.reconstruction_paths: frozenset[str] = frozenset()

    @property
    def images_embedded(self) -> int:
        """Images embedded so far in this run."""
        return self.cache.computed

    @property
    def images_without_face(self) -> int:
        """Images embedded whole because no face was detected in them."""
        return self.cache.no_face

    def study_prepare(self, *, slug: str) -> None:
        """Learn which of the study's query images are reconstructions."""
        self.reconstruction_paths = reconstruction_query_paths(slug)

    def decide(
        self,
        *,
        query: str,
        candidates: dict[int, str],
        load: Callable[[str], bytes],
        rng: random.Random,
    ) -> Decision:
        """Decide on a question whose images are at these URLs (`load` fetches one)."""
        q = self.cache.vector(
            query,
            lambda: load(query),
            reconstruction=urlsplit(query).path in self.reconstruction_paths,
        )
        scores = {
            photo: float(q @ self.cache.vector(url, lambda url=url: load(url)))
            for photo, url in candidates.items()
        }
        return softmax_decide(scores=scores, params=self.params, rng=rng)


def reconstruction_query_paths(slug: str) -> frozenset[str]:
    """URL paths of the study's query images that are reconstructions (match sets whose
    provenance names a reconstruction, as build_study writes); empty for an unknown study."""
    from django.core.files.storage import default_storage

    from survey.models import MatchSet

    rows = MatchSet.objects.filter(study__slug=slug).values_list("query_image", "provenance")
    return frozenset(
        urlsplit(default_storage.url(name)).path
        for name, provenance in rows
        if isinstance(provenance, dict) and provenance.get("reconstruction")
    )


def recognizer_observer_create(name: str, params: ObserverParams) -> RecognizerObserver:
    """The observer of recognizer `name`; a clear `BotError` when torch or dlib is missing."""
    try:
        import dlib  # noqa: F401  (every recognizer observer finds faces with dlib)

        import reconstruction.recognizers.registry  # noqa: F401  (torch)
    except ImportError as exc:
        raise BotError(
            f"The {name!r} observer embeds faces with a recognizer and needs the torch side "
            f"(the ml extra: pip install '.[ml]'), which is not installed here ({exc}). "
            "Use --observer random, or install the ml extra."
        ) from exc
    return RecognizerObserver(name, params)


def observers_register() -> None:
    """Register every recognizer as an observer of the survey's bots (lazy factories)."""
    for name in RECOGNIZER_OBSERVERS:
        observer_register(name, functools.partial(recognizer_observer_create, name))
