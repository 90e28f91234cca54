"""One simulated participant: a bot that takes a study through its real HTTP pages.

Each bot is a fresh HTTP client with its own cookie jar. It opens the study from a
Prolific-style link, consents, answers the demographics at random, reads the instructions,
answers every question page by parsing the HTML (CSRF token, the question's hidden token,
the candidate checkboxes and image URLs, the attention instruction), fetches the question's
images like a browser, submits the debrief and stops at the redirect to Prolific (or at the
"study has ended" page). Nothing is posted that a participant's browser could not post.

Attentive bots answer through their observer (`survey.bots.observers`) and follow the
instruction on an attention check ("select photo N only and answer ‘LABEL’"). Careless
bots never read: they pick one photo or "none" uniformly and a uniform confidence, and on
attention checks they answer anything but the instruction (a random answer that happens to
satisfy it is redrawn), so they fail every check and the attention rule ends their
participation.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from survey.bots.errors import BotError
from survey.bots.observers import Decision, Observer, uniform_decide
from survey.bots.pages import ATTENTION_RE, PageParser, page_parse

# Bots' IDs have Prolific's format (24 hexadecimal characters), so that they pass the same
# check as real ones: PIDs start "b07" ("bot"), their SESSION_IDs "5e5" ("ses").
BOT_PREFIX = "b07"
BOT_SESSION_PREFIX = "5e5"
BOT_STUDY_ID = "b07" + "0" * 21
USER_AGENT = "fvr-study-bot/1 (survey.bots)"
RATE_LIMIT_RETRIES = 20


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


def bot_session_id(pid: str) -> str:
    """The bot's SESSION_ID: its PID with the session prefix (unique as the PIDs are)."""
    return BOT_SESSION_PREFIX + pid[len(BOT_PREFIX) :]
