"""Simulated participants: bots that take a study through its real HTTP pages.

Each bot is a fresh HTTP client with its own cookie jar. It opens the study from a
Prolific-style link, consents, answers the demographics at random, reads the instructions,
answers every question page by parsing the HTML (CSRF token, the question's hidden token,
the candidate checkboxes and image URLs, the attention instruction), fetches the question's
images like a browser, submits the debrief and stops at the redirect to Prolific (or at the
"study has ended" page). Nothing is posted that a participant's browser could not post.

Observer model (how an attentive bot answers a question)
--------------------------------------------------------
``random``: each of the K candidates and "none of these" is chosen with probability
1/(K + 1); confidence is uniform on 1–5. Needs no torch (load tests, fast tests).

A recognizer name (``dlib-resnet``, the default; any name in
``reconstruction.recognizers.registry.RECOGNIZERS``): the observer embeds the query image and each
candidate image (as fetched over HTTP) with that recognizer — a third recognizer, neither
F nor F' of a real study — and takes cosine similarities s_1 … s_K. A query that is a
reconstruction (a match set made by build_study, whose provenance names its reconstruction;
`bots_run` reads which query images these are, as the researcher knows them) is a square
image in the ArcFace frame and is embedded through
`reconstruction.recognizers.registry.reconstruction_embed`, the view Metric 1 and build_study use
(dlib: the chip cut with the fixed mean dlib shape). In any other image (candidate photos,
the real-photo queries of `demo_study_create`) the face is found with dlib's HOG detector and
cut the way the recognizer expects (dlib: ``get_face_chip`` 150 px, padding 0.25; others:
the ArcFace 5-point template); a photo without a detected face is embedded whole. Each
image is embedded once per run (cache keyed by URL without its query string, so presigned
URLs share an entry). Then one option is drawn from a softmax:

    p_i    = exp(s_i / T) / Z,   i = 1 … K
    p_none = exp(tau / T) / Z,   Z = exp(tau / T) + sum_j exp(s_j / T)

with temperature ``T`` and a "none of these" threshold ``tau`` (in cosine units). The bot
selects the drawn photo (a single pick), or "none of these". Confidence comes from the
margin m = (score of the drawn option) − (best score among the other options, tau
included): latent = m / ``confidence_step`` + ``confidence_noise`` · Logistic(0, 1) + 3,
rounded and clipped to 1–5 (a drawn option that is not the best gives a low rating).

Because the draw is a known categorical distribution, the probability that the bot selects a
true match on a question is P(correct) = sum of p_i over the true candidates: every answer
record keeps p_i per photo number (the bot sees photos, never ranks; the truth and the
display order are read from the database afterwards, as the researcher has them), so the
observer's expected accuracy per method is computed from the model alone
(``observer_expected_accuracy``) and compared with what ``analyze_study`` estimates from the
stored responses.

Careless bots (a ``careless`` fraction, chosen at random) never read: they pick one photo or
"none" uniformly and a uniform confidence, and on attention checks they answer anything but
the instruction (a random answer that happens to satisfy it is redrawn), so they fail every
check and the attention rule ends their participation. Attentive bots follow the
instruction on the page ("select photo N only and answer ‘LABEL’").

The parameters (``ObserverParams``) are stated in ``docs/pilot.md``; the defaults were
chosen so that dlib-resnet on real LFW photos lands near, not at, its ceiling.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

RANDOM_OBSERVER = "random"
DEFAULT_OBSERVER = "dlib-resnet"
# Bots' IDs have Prolific's format (24 hexadecimal characters), so that they pass the same
# check as real ones: PIDs start "b07" ("bot"), their SESSION_IDs "5e5" ("ses").
BOT_PREFIX = "b07"
BOT_SESSION_PREFIX = "5e5"
BOT_STUDY_ID = "b07" + "0" * 21
USER_AGENT = "fvr-study-bot/1 (survey.bots)"
CONFIDENCE_LEVELS = 5
RATE_LIMIT_RETRIES = 20


class BotError(Exception):
    """A bot could not go on: the page was refused, unreadable or never reached the end."""


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


# --- observers ------------------------------------------------------------------------------


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
        # Imported here: the survey never imports torch at start-up.
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


class Observer:
    """Turns a question (images by URL) into a decision; `random` needs no images."""

    def __init__(self, name: str, params: ObserverParams) -> None:
        self.name = name
        self.params = params
        self.cache = None if name == RANDOM_OBSERVER else EmbeddingCache(name)
        # URL paths of query images that are reconstructions (`reconstruction_query_paths`).
        self.reconstruction_paths: frozenset[str] = frozenset()

    def decide(
        self,
        *,
        query: str,
        candidates: dict[int, str],
        load: Callable[[str], bytes],
        rng: random.Random,
    ) -> Decision:
        """Decide on a question whose images are at these URLs (`load` fetches one)."""
        if self.cache is None:
            return uniform_decide(photos=list(candidates), rng=rng)
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


def observer_names() -> list[str]:
    """`random` and every registered recognizer (imports the recognizer registry)."""
    from reconstruction.recognizers.registry import RECOGNIZERS

    return [RANDOM_OBSERVER, *sorted(RECOGNIZERS)]


def observer_create(*, name: str, params: ObserverParams | None = None) -> Observer:
    """An observer by name; a recognizer's weights load on first use."""
    if name != RANDOM_OBSERVER and name not in observer_names():
        raise BotError(f"Unknown observer {name!r}; known: {', '.join(observer_names())}.")
    return Observer(name, params or ObserverParams())


# --- pages ----------------------------------------------------------------------------------

VOID_TAGS = {"input", "img", "br", "hr", "meta", "link", "source", "area", "wbr", "col"}


class PageParser(HTMLParser):
    """What a bot needs from a participant page: form fields, labels, images, instructions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inputs: list[dict[str, str]] = []
        self.label_text: dict[str, str] = {}  # label for= -> its text
        self.query_image: str | None = None
        self.candidates: list[tuple[int, str]] = []  # (photo number, image URL) as shown
        self.texts: dict[str, str] = {}  # id -> text of elements with these ids
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._label_for: str | None = None
        self._label_buffer: list[str] = []
        self._candidate_photo: int | None = None
        self._watched = {"attention", "completion-code"}
        self._buffers: dict[str, list[str]] = {}

    def _inside(self, tag: str, cls: str) -> bool:
        return any(t == tag and cls in a.get("class", "").split() for t, a in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input":
            self.inputs.append(a)
            if self._inside("label", "candidate") and a.get("name") == "selected":
                self._candidate_photo = int(a["value"])
        elif tag == "img":
            if self._inside("figure", "query"):
                self.query_image = a.get("src")
            elif self._inside("label", "candidate") and self._candidate_photo is not None:
                self.candidates.append((self._candidate_photo, a.get("src", "")))
        if tag in VOID_TAGS:
            return
        self._stack.append((tag, a))
        if tag == "label":
            self._label_for, self._label_buffer = a.get("for"), []
        if a.get("id") in self._watched:
            self._buffers[a["id"]] = []

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, a = self._stack.pop()
            if a.get("id") in self._buffers:
                self.texts[a["id"]] = " ".join("".join(self._buffers.pop(a["id"])).split())
            if open_tag == "label":
                if self._label_for:
                    self.label_text[self._label_for] = " ".join("".join(self._label_buffer).split())
                self._label_for = None
                self._candidate_photo = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._label_for is not None:
            self._label_buffer.append(data)
        for buffer in self._buffers.values():
            buffer.append(data)

    def hidden_fields(self) -> dict[str, str]:
        return {i["name"]: i.get("value", "") for i in self.inputs if i.get("type") == "hidden"}

    def options(self, name: str) -> list[dict[str, str]]:
        return [i for i in self.inputs if i.get("name") == name]


def page_parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


ATTENTION_RE = re.compile(r"select photo (\d+) only and answer [“\"](.+?)[”\"]")


# --- one bot --------------------------------------------------------------------------------


@dataclass
class AnswerRecord:
    """What a bot saw and answered on one question page."""

    position: int
    token: str
    attention_check: bool
    shown: list[int]  # the photo numbers (checkbox values) in display order
    selected: list[int]
    none_selected: bool
    confidence: int
    probabilities: dict[int, float]
    p_none: float
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class BotResult:
    """One bot's participation."""

    pid: str
    careless: bool
    outcome: str = "error"  # completed (sent to Prolific) | ended (study ended) | error
    completion_code: str = ""
    answers: list[AnswerRecord] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    requests: int = 0


class Bot:
    """One simulated participant driving the participant pages over HTTP."""

    def __init__(
        self,
        *,
        base_url: str,
        slug: str,
        pid: str,
        study_id: str,
        observer: Observer,
        careless: bool,
        rng: random.Random,
        think_seconds: float = 0.0,
        every_image: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.origin = urlsplit(self.base).netloc
        self.slug = slug
        self.study_id = study_id
        self.observer = observer
        self.rng = rng
        self.think_seconds = think_seconds
        self.every_image = every_image
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        self.result = BotResult(pid=pid, careless=careless)

    # HTTP ------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        for _ in range(RATE_LIMIT_RETRIES):
            self.result.requests += 1
            try:
                response = self.http.request(
                    method, url, timeout=self.timeout, allow_redirects=False, **kwargs
                )
            except requests.RequestException as exc:
                raise BotError(f"{method} {url} failed: {exc}") from exc
            finally:
                # A new connection per request (the cookie jar stays): a kept-alive connection
                # to Django's threaded server stalls ~40 ms a request (Nagle vs delayed ACK).
                self.http.close()
            if response.status_code != 429:
                return response
            # Every bot comes from one address: wait as the entry rate limit asks.
            time.sleep(min(60.0, float(response.headers.get("Retry-After", "1") or 1)))
        raise BotError(f"{method} {url} was still rate limited after {RATE_LIMIT_RETRIES} tries")

    def _follow(self, response: requests.Response) -> requests.Response | None:
        """Follow redirects on our own origin; None when sent away (to Prolific)."""
        for _ in range(10):
            if not response.is_redirect:
                return response
            target = urljoin(response.url, response.headers["Location"])
            if urlsplit(target).netloc != self.origin:
                self.result.completion_code = parse_qs(urlsplit(target).query).get("cc", [""])[0]
                self.result.outcome = "completed"
                return None
            if urlsplit(target).scheme != urlsplit(self.base).scheme:
                raise BotError(
                    f"the server redirects to {target}: HTTPS-only settings are on; run the "
                    "bots against the HTTPS address with --base-url"
                )
            response = self._request("GET", target)
        raise BotError(f"too many redirects from {response.url}")

    def _post(self, response: requests.Response, page: PageParser, data: dict) -> Any:
        fields = {**page.hidden_fields(), **data}
        return self._follow(
            self._request("POST", response.url, data=fields, headers={"Referer": response.url})
        )

    def _image(self, url: str) -> bytes:
        response = self._request("GET", url)
        if response.status_code != 200:
            raise BotError(f"image {url} answered {response.status_code}")
        return response.content

    # the path --------------------------------------------------------------------------------

    def run(self) -> BotResult:
        started = time.perf_counter()
        try:
            self._run()
        except BotError as exc:
            self.result.outcome, self.result.error = "error", str(exc)
        finally:
            self.result.seconds = round(time.perf_counter() - started, 3)
            self.http.close()
        return self.result

    def _run(self) -> None:
        params = {
            "PROLIFIC_PID": self.result.pid,
            "STUDY_ID": self.study_id,
            "SESSION_ID": bot_session_id(self.result.pid),
        }
        response = self._follow(
            self._request("GET", f"{self.base}/s/{self.slug}/?{urlencode(params)}")
        )
        prefix = f"/s/{self.slug}/"
        for _ in range(200):
            if response is None:
                return
            path = urlsplit(response.url).path
            step = path[len(prefix) :] if path.startswith(prefix) else path
            if response.status_code != 200:
                raise BotError(f"{path} answered {response.status_code}: {_message(response)}")
            page = page_parse(response.text)
            if step == "consent/":
                response = self._post(response, page, {"decision": "agree"})
            elif step == "about-you/":
                response = self._post(
                    response,
                    page,
                    {
                        name: self.rng.choice([o["value"] for o in page.options(name)])
                        for name in ("gender", "age_group")
                    },
                )
            elif step in ("instructions/", "debrief/"):
                response = self._post(response, page, {})
            elif step.startswith("question/"):
                response = self._answer(response, page, int(step.split("/")[1]))
            elif step == "done/":
                self.result.outcome = "ended"
                self.result.completion_code = page.texts.get("completion-code", "")
                return
            else:
                raise BotError(f"unexpected page {path}")
        raise BotError("the study did not end after 200 pages")

    def _answer(
        self, response: requests.Response, page: PageParser, position: int
    ) -> requests.Response | None:
        if not page.candidates or page.query_image is None:
            raise BotError(f"question {position}: no images found on the page")
        shown = [photo for photo, _ in page.candidates]
        instruction = page.texts.get("attention")
        query = urljoin(response.url, page.query_image)
        images = {photo: urljoin(response.url, src) for photo, src in page.candidates}
        loaded: dict[str, bytes] = {}
        if self.every_image:
            # Like a browser: every image on the page is loaded, looked at or not.
            for url in [query, *images.values()]:
                loaded[url] = self._image(url)
        load = lambda url: loaded[url] if url in loaded else self._image(url)  # noqa: E731
        if self.result.careless:
            decision = uniform_decide(photos=shown, rng=self.rng)
            if instruction:
                decision = self._ignore(instruction, page, shown, decision)
        elif instruction:
            decision = self._instructed(instruction, page, shown)
        else:
            decision = self.observer.decide(query=query, candidates=images, load=load, rng=self.rng)
        if self.think_seconds:
            time.sleep(self.think_seconds * self.rng.uniform(0.5, 1.5))
        self.result.answers.append(
            AnswerRecord(
                position=position,
                token=page.hidden_fields().get("question", ""),
                attention_check=bool(instruction),
                shown=shown,
                selected=decision.selected,
                none_selected=not decision.selected,
                confidence=decision.confidence,
                probabilities=decision.probabilities,
                p_none=decision.p_none,
                scores=decision.scores,
            )
        )
        data: dict[str, Any] = {"confidence": str(decision.confidence)}
        if decision.selected:
            data["selected"] = [str(r) for r in decision.selected]
        else:
            data["none_of_these"] = "on"
        return self._post(response, page, data)

    def _instructed(self, instruction: str, page: PageParser, shown: list[int]) -> Decision:
        match = ATTENTION_RE.search(instruction)
        if not match:
            raise BotError(f"unreadable attention instruction: {instruction!r}")
        photo, label = int(match.group(1)), match.group(2)
        values = [
            int(o["value"])
            for o in page.options("confidence")
            if page.label_text.get(o.get("id", "")) == label
        ]
        if not values or not 1 <= photo <= len(shown):
            raise BotError(f"the attention instruction names no option on the page: {label!r}")
        value = shown[photo - 1]  # the checkbox of "Photo N"
        return Decision(
            selected=[value], confidence=values[0], probabilities={value: 1.0}, p_none=0.0
        )

    def _ignore(
        self, instruction: str, page: PageParser, shown: list[int], decision: Decision
    ) -> Decision:
        asked = self._instructed(instruction, page, shown)
        while (decision.selected, decision.confidence) == (asked.selected, asked.confidence):
            decision = uniform_decide(photos=shown, rng=self.rng)
        return decision


def _message(response: requests.Response) -> str:
    """The main message of an error page, for the bot's report."""
    match = re.search(r"<main[^>]*>(.*?)</main>", response.text, re.S)
    text = re.sub(r"<[^>]+>", " ", match.group(1) if match else response.text[:500])
    return " ".join(text.split())[:300]


# --- a run ----------------------------------------------------------------------------------


@dataclass
class PilotRun:
    """Every bot's result and the run's settings."""

    base_url: str
    slug: str
    observer: str
    params: ObserverParams
    careless: float
    seed: int
    concurrency: int
    results: list[BotResult]
    seconds: float
    every_image: bool = True
    images_embedded: int = 0
    images_without_face: int = 0

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PilotRun:
        """Read back `as_dict()` after a JSON round trip (photo-number keys become ints again)."""
        results = []
        for r in data["results"]:
            answers = [
                AnswerRecord(
                    **{
                        **a,
                        "probabilities": {int(k): v for k, v in a["probabilities"].items()},
                        "scores": {int(k): v for k, v in a.get("scores", {}).items()},
                    }
                )
                for a in r["answers"]
            ]
            results.append(BotResult(**{**r, "answers": answers}))
        return cls(**{**data, "params": ObserverParams(**data["params"]), "results": results})


def bot_session_id(pid: str) -> str:
    """The bot's SESSION_ID: its PID with the session prefix (unique as the PIDs are)."""
    return BOT_SESSION_PREFIX + pid[len(BOT_PREFIX) :]


def bots_run(
    *,
    base_url: str,
    slug: str,
    n: int,
    observer: Observer,
    careless: float = 0.0,
    seed: int = 0,
    concurrency: int = 4,
    study_id: str = BOT_STUDY_ID,
    think_seconds: float = 0.0,
    every_image: bool = True,
    progress: Callable[[BotResult, int], None] | None = None,
) -> PilotRun:
    """Run `n` bots against `base_url` (`concurrency` at a time); PIDs are new every run.

    `every_image`: each bot loads every image of its pages, as a browser does (load tests);
    otherwise only images the observer has not yet embedded are fetched (fast pilots).
    """
    if n < 1:
        raise BotError("Run at least one bot (--n 1 or more).")
    if not 0 <= careless <= 1:
        raise BotError("--careless is a fraction between 0 and 1.")
    if observer.cache is not None:
        observer.reconstruction_paths = reconstruction_query_paths(slug)
    rng = random.Random(seed)
    careless_bots = set(rng.sample(range(n), round(careless * n)))
    run_tag = uuid.uuid4().hex[:13]  # fresh PIDs: a rerun adds participants
    bots = [
        Bot(
            base_url=base_url,
            slug=slug,
            pid=f"{BOT_PREFIX}{run_tag}{i + 1:08x}",  # 3 + 13 + 8 = 24 hex characters
            study_id=study_id,
            observer=observer,
            careless=i in careless_bots,
            rng=random.Random(f"{seed}:{i}"),
            think_seconds=think_seconds,
            every_image=every_image,
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    results: list[BotResult] = []
    lock = threading.Lock()

    def one(bot: Bot) -> BotResult:
        result = bot.run()
        with lock:
            results.append(result)
            if progress:
                progress(result, len(results))
        return result

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, bots))
    order = {bot.result.pid: i for i, bot in enumerate(bots)}
    results.sort(key=lambda r: order[r.pid])
    return PilotRun(
        base_url=base_url,
        slug=slug,
        observer=observer.name,
        params=observer.params,
        careless=careless,
        seed=seed,
        concurrency=concurrency,
        results=results,
        seconds=round(time.perf_counter() - started, 3),
        every_image=every_image,
        images_embedded=observer.cache.computed if observer.cache else 0,
        images_without_face=observer.cache.no_face if observer.cache else 0,
    )


# --- the in-process server ------------------------------------------------------------------


class LocalServer:
    """The project served over HTTP on a free loopback port, in a thread of this process."""

    def __init__(self) -> None:
        from django.conf import settings
        from django.db import connections
        from django.test.testcases import LiveServerThread
        from django.test.utils import override_settings

        # An in-memory SQLite database (tests) exists in this connection only: share it.
        self._shared = {
            conn.alias: conn
            for conn in connections.all()
            if conn.vendor == "sqlite" and conn.is_in_memory_db()
        }
        for conn in self._shared.values():
            conn.inc_thread_sharing()
        # Plain HTTP on loopback: HTTPS-only hardening would redirect the bots away. The
        # middleware reads these when the server thread builds its handler, hence before start.
        storages = dict(settings.STORAGES)
        static = storages.get("staticfiles", {}).get("BACKEND", "")
        if "Manifest" in static and not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
            # Without collectstatic a manifest storage fails every page; bots need no CSS.
            storages["staticfiles"] = {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            }
        self._settings = override_settings(
            STORAGES=storages,
            SECURE_SSL_REDIRECT=False,
            SESSION_COOKIE_SECURE=False,
            CSRF_COOKIE_SECURE=False,
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "127.0.0.1"],
            FVR_ENTRY_RATE="off",  # every bot arrives from 127.0.0.1
        )
        self._settings.enable()
        self._thread = LiveServerThread(
            "127.0.0.1", lambda app: app, connections_override=self._shared, port=0
        )
        self._thread.daemon = True
        self._thread.start()
        self._thread.is_ready.wait()
        if self._thread.error:
            self.stop()
            raise BotError(f"could not start the local server: {self._thread.error}")
        self.url = f"http://127.0.0.1:{self._thread.port}"

    @property
    def shares_one_connection(self) -> bool:
        """Requests share this process's single SQLite connection: run them one at a time."""
        return bool(self._shared)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._thread.terminate()
        self._settings.disable()
        for conn in self._shared.values():
            conn.dec_thread_sharing()


# --- what the observer model predicts ---------------------------------------------------------


@dataclass(frozen=True)
class MethodExpectation:
    """Per method: target-present answers, the observer's expected and the observed accuracy."""

    method: str
    n_responses: int
    expected: float
    observed: float


def observer_expected_accuracy(
    *, study: Any, run: PilotRun, pseudonyms: set[str] | None = None
) -> list[MethodExpectation]:
    """Expected accuracy per method from the bots' own P(correct), on target-present questions.

    Counts attentive bots that completed (or only the given pseudonyms); the truth (which
    candidates are true) is read from the database, as the researcher has it.
    """
    from survey.models import Assignment, pseudonymise

    by_pid = {r.pid: r for r in run.results}
    if pseudonyms is None:
        keep = {r.pid for r in run.results if r.outcome == "completed" and not r.careless}
    else:
        keep = {pid for pid in by_pid if pseudonymise(pid) in pseudonyms}
    tokens = {
        a.token: a for pid in keep for a in by_pid[pid].answers if not a.attention_check and a.token
    }
    rows = (
        Assignment.objects.filter(token__in=list(tokens), participant__study=study)
        .select_related("match_set")
        .prefetch_related("match_set__candidates")
    )
    sums: dict[str, list[float]] = {}
    for assignment in rows:
        true = {
            assignment.photo_number(c.rank, study.k)
            for c in assignment.match_set.candidates.all()
            if c.is_true
        }
        if not true:
            continue
        record = tokens[str(assignment.token)]
        p = sum(record.probabilities.get(photo, 0.0) for photo in true)
        hit = float(bool(true.intersection(record.selected)))
        acc = sums.setdefault(assignment.match_set.method, [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += p
        acc[2] += hit
    return [
        MethodExpectation(method=m, n_responses=int(n), expected=e / n, observed=o / n)
        for m, (n, e, o) in sorted(sums.items())
    ]
