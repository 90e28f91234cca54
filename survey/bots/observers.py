"""The observer model: how an attentive bot answers a question, and the registry of observers.

An observer turns a question (a query image and K candidate images, by URL) into a
`Decision`. The survey holds the protocol (`Observer`), the two decision rules and the
``random`` observer; observers that look at the images (a recognizer's embeddings) live
with the torch side and register here from their app's ``ready()``
(`reconstruction.studies.observers`), so the survey never imports torch.

``random``: each of the K candidates and "none of these" is chosen with probability
1/(K + 1); confidence is uniform on 1–5. Needs no torch (load tests, fast tests).

A scoring observer takes cosine similarities s_1 … s_K of the query to each candidate and
draws one option from a softmax:

    p_i    = exp(s_i / T) / Z,   i = 1 … K
    p_none = exp(tau / T) / Z,   Z = exp(tau / T) + sum_j exp(s_j / T)

with temperature ``T`` and a "none of these" threshold ``tau`` (in cosine units). The bot
selects the drawn photo (a single pick), or "none of these". Confidence comes from the
margin m = (score of the drawn option) − (best score among the other options, tau
included): latent = m / ``confidence_step`` + ``confidence_noise`` · Logistic(0, 1) + 3,
rounded and clipped to 1–5 (a drawn option that is not the best gives a low rating).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from survey.bots.errors import BotError

RANDOM_OBSERVER = "random"
# A recognizer observer, registered by the reconstruction app (named here, never imported).
DEFAULT_OBSERVER = "dlib-resnet"
CONFIDENCE_LEVELS = 5


@dataclass(frozen=True)
class ObserverParams:
    """The stated parameters of the noisy decision rule (see the module docstring)."""

    temperature: float = 0.03  # softmax temperature over cosine similarities
    none_threshold: float = 0.90  # tau: the "none of these" option's score (cosine)
    confidence_step: float = 0.03  # cosine margin per Likert step
    confidence_noise: float = 0.8  # scale of the logistic noise on the latent confidence


@dataclass(frozen=True)
class Decision:
    """One answer: picks (photo numbers as shown; empty = none of these), confidence, and the
    draw's law."""

    selected: list[int]
    confidence: int
    probabilities: dict[int, float]  # photo number -> P(this photo is the pick)
    p_none: float
    scores: dict[int, float] = field(default_factory=dict)  # photo number -> cosine, if any


def softmax_decide(
    *, scores: dict[int, float], params: ObserverParams, rng: random.Random
) -> Decision:
    """The observer's noisy decision rule on cosine scores by photo number."""
    photos = list(scores)
    options = [*photos, None]
    values = [scores[n] for n in photos] + [params.none_threshold]
    top = max(values)
    weights = [math.exp((v - top) / params.temperature) for v in values]
    total = sum(weights)
    probs = [w / total for w in weights]
    choice = rng.choices(range(len(options)), weights=probs)[0]
    others = [v for i, v in enumerate(values) if i != choice]
    margin = values[choice] - max(others)
    latent = margin / params.confidence_step + params.confidence_noise * _logistic(rng) + 3
    confidence = min(CONFIDENCE_LEVELS, max(1, round(latent)))
    picked = options[choice]
    return Decision(
        selected=[] if picked is None else [picked],
        confidence=confidence,
        probabilities=dict(zip(photos, probs, strict=False)),
        p_none=probs[-1],
        scores=dict(scores),
    )


def uniform_decide(*, photos: list[int], rng: random.Random) -> Decision:
    """One photo or "none" with equal chances, and a uniform confidence."""
    options = [*photos, None]
    picked = rng.choice(options)
    share = 1 / len(options)
    return Decision(
        selected=[] if picked is None else [picked],
        confidence=rng.randint(1, CONFIDENCE_LEVELS),
        probabilities=dict.fromkeys(photos, share),
        p_none=share,
    )


def _logistic(rng: random.Random) -> float:
    u = min(max(rng.random(), 1e-12), 1 - 1e-12)
    return math.log(u / (1 - u))


class Observer(Protocol):
    """What the bots ask of an observer model (one instance is shared by a run's bots)."""

    name: str
    params: ObserverParams

    @property
    def images_embedded(self) -> int:
        """Images the observer has looked at so far (0 for one that never looks)."""

    @property
    def images_without_face(self) -> int:
        """Of those, images in which no face was found."""

    def study_prepare(self, *, slug: str) -> None:
        """Read what the observer may know of the study (as its researcher), before a run."""

    def decide(
        self,
        *,
        query: str,
        candidates: dict[int, str],
        load: Callable[[str], bytes],
        rng: random.Random,
    ) -> Decision:
        """Decide on a question whose images are at these URLs (`load` fetches one)."""


class RandomObserver:
    """The ``random`` observer: answers uniformly and never looks at an image."""

    name = RANDOM_OBSERVER
    images_embedded = 0
    images_without_face = 0

    def __init__(self, params: ObserverParams) -> None:
        self.params = params

    def study_prepare(self, *, slug: str) -> None:
        """Nothing to read: the answers do not depend on the study."""

    def decide(
        self,
        *,
        query: str,
        candidates: dict[int, str],
        load: Callable[[str], bytes],
        rng: random.Random,
    ) -> Decision:
        """One photo or "none", uniformly (`load` is never called)."""
        return uniform_decide(photos=list(candidates), rng=rng)


ObserverFactory = Callable[[ObserverParams], Observer]

# Observer name -> constructor taking the parameters; apps add theirs in `ready()`.
OBSERVERS: dict[str, ObserverFactory] = {RANDOM_OBSERVER: RandomObserver}


def observer_register(name: str, factory: ObserverFactory) -> None:
    """Make `name` an observer built by `factory(params)` (heavy imports belong in the factory)."""
    OBSERVERS[name] = factory


def observer_names() -> list[str]:
    """`random` first, then every registered observer by name."""
    return [RANDOM_OBSERVER, *sorted(name for name in OBSERVERS if name != RANDOM_OBSERVER)]


def observer_create(*, name: str, params: ObserverParams | None = None) -> Observer:
    """An observer by name; a recognizer's weights load on first use."""
    factory = OBSERVERS.get(name)
    if factory is None:
        raise BotError(f"Unknown observer {name!r}; known: {', '.join(observer_names())}.")
    return factory(params or ObserverParams())
