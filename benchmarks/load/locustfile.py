"""Simulated Prolific participants for locust: the full real flow over HTTP, with a client log.

Each locust user plays one participant after another: arrival from a Prolific link, consent,
demographics, instructions, every question (the page, its images, an answer; attention checks
answered as instructed), the debrief and the completion redirect. Requests that fail with a
server error or a broken connection are retried with backoff, as a participant's browser would
(`static/survey/survey.js` does the same for answers). The client's log — answers the server
acknowledged, completion codes, answers still in doubt — is what `benchmarks.load` compares
with the database.

Run by `python -m benchmarks.load` (which sets `PLAN`); also usable on its own:
`locust -f benchmarks/load/locustfile.py --host http://127.0.0.1:8000` with FVR_LOAD_SLUG set.
"""

import itertools
import os
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import gevent
from gevent.event import Event
from locust import task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
TOKEN_RE = re.compile(r'name="question" value="([0-9a-f-]{36})"')
FORM_RE = re.compile(r'<form method="post" class="question".*?</form>', re.S)
IMG_RE = re.compile(r'<img src="([^"]+)"')
CANDIDATE_RE = re.compile(r'id="cand-(\d+)" name="selected" value="(\d+)"')
CONFIDENCE_RE = re.compile(r'id="conf-(\d)" name="confidence" value="\d"[^>]*> ([^<]+)</label>')
ATTENTION_RE = re.compile(
    r"select <strong>photo (\d+)</strong> only and answer\s*<strong>“(.+?)”</strong>", re.S
)
STATIC_RE = re.compile(r'(?:rel="stylesheet" href|<script src)="([^"]+)"')
QUESTION_PATH_RE = re.compile(r"/question/(\d+)/$")
MINIMAL_PATH = "/__load/{slug}/minimal-answer/"  # benchmarks/load/urls.py
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
SCRIPT_HEADERS = {**FORM_HEADERS, "Accept": "application/json", "X-Requested-With": "fetch"}


@dataclass
class Plan:
    """What the simulated participants do; set by `benchmarks.load.loadgen` before spawning."""

    slug: str = os.environ.get("FVR_LOAD_SLUG", "load")
    run_tag: str = os.environ.get("FVR_LOAD_RUN_TAG", uuid.uuid4().hex[:8])
    think_seconds: float = float(os.environ.get("FVR_LOAD_THINK", "2.0"))
    burst: int = 0  # > 0: every user is one arrival, released together once all have spawned
    # As a browser running the page's script (static/survey/survey.js): each answer is posted
    # asking for JSON and its acknowledgement brings the next question (one request per
    # question); False: as a browser without JavaScript (POST, redirect, next page).
    javascript: bool = True
    give_up_seconds: float = 120.0  # a request that keeps failing this long abandons the flow
    # The efficiency baseline (benchmarks/load/minimal.py): enter once, then post the minimal
    # answer view again and again with the same think time, instead of taking the flow.
    minimal: bool = False
    # > 0: each flow user starts after a random 0–S s, so that arrivals come as a steady stream
    # rather than in waves of every user at once, which a closed loop keeps in step.
    stagger_seconds: float = 0.0


@dataclass
class ClientLog:
    """What the clients saw; compared with the database after the run."""

    entered: list[str] = field(default_factory=list)
    acked: list[dict] = field(default_factory=list)
    pending: dict[str, dict] = field(default_factory=dict)  # pid -> answer sent, not yet acked
    completed: list[dict] = field(default_factory=list)
    assigned: list[str] = field(default_factory=list)  # burst arrivals that reached question 1
    to_question: list[float] = field(default_factory=list)  # their seconds from release to it
    abandoned: list[dict] = field(default_factory=list)
    retries: int = 0
    ready: int = 0  # minimal users that have entered and hold a CSRF token
    minimal: int = 0  # minimal answers acknowledged


PLAN = Plan()
LOG = ClientLog()
STOP = Event()  # set when the run ends: users finish the request in hand, then stop
BURST_GATE = Event()
_serial = itertools.count(1)
_spawned = itertools.count(1)


class Abandon(Exception):
    """The flow cannot go on (an unexpected answer from the server, or retries ran out)."""


class Participant(FastHttpUser):
    """One simulated participant after another, at a compressed pace."""

    host = "http://127.0.0.1:8000"
    network_timeout = 30.0
    connection_timeout = 10.0
    max_retries = 0  # retries are ours, visible in the log
    confidences: dict[str, str]  # confidence label -> value, read from the first question page

    def wait_time(self) -> float:
        return 0.0

    def pause(self, seconds: float) -> None:
        """Think time, cut short when the run stops."""
        STOP.wait(seconds * random.uniform(0.75, 1.25))

    def send(
        self,
        method: str,
        path: str,
        name: str,
        *,
        expect: tuple[int, ...],
        data: list[tuple[str, str]] | None = None,
        headers: dict[str, str] = FORM_HEADERS,
    ) -> object:
        """One request, retried with backoff on a server error or a broken connection."""
        delay, started = 0.5, time.monotonic()
        while True:
            kwargs = {"allow_redirects": False, "name": name, "catch_response": True}
            if data is not None:
                kwargs |= {"data": urlencode(data), "headers": headers}
            with self.client.request(method, path, **kwargs) as response:
                status = response.status_code
                if status in expect:
                    response.success()
                    return response
                response.failure(f"{name}: HTTP {status or 'connection error'}")
            if status and status < 500:
                raise Abandon(f"{name} {path}: unexpected HTTP {status}")
            if time.monotonic() - started > PLAN.give_up_seconds:
                raise Abandon(f"{name} {path}: still failing after {PLAN.give_up_seconds:.0f} s")
            LOG.retries += 1
            gevent.sleep(delay)
            delay = min(delay * 2, 10.0)

    def follow(self, response: object) -> str:
        """The path a redirect points to."""
        location = response.headers.get("location") or response.headers.get("Location") or ""
        return urlsplit(location).path if location.startswith("/") else location

    def page(self, path: str, name: str) -> str:
        return self.send("GET", path, name, expect=(200,)).text

    def post_form(self, path: str, name: str, html: str, fields: list[tuple[str, str]]) -> str:
        match = CSRF_RE.search(html)
        if not match:
            raise Abandon(f"{name}: no CSRF token on {path}")
        data = [("csrfmiddlewaretoken", match.group(1)), *fields]
        return self.follow(self.send("POST", path, name, expect=(302,), data=data))

    def fetch_static(self, html: str) -> None:
        for url in STATIC_RE.findall(html):
            self.send("GET", url, "static", expect=(200,))

    def on_start(self) -> None:
        if PLAN.stagger_seconds > 0 and not (PLAN.burst or PLAN.minimal):
            STOP.wait(random.uniform(0, PLAN.stagger_seconds))

    @task
    def participate(self) -> None:
        if STOP.is_set():
            raise StopUser()
        self.client.cookiejar.clear()
        pid = f"{PLAN.run_tag}x{next(_serial):06d}"
        try:
            if PLAN.minimal:
                self.post_minimal(pid)
                raise StopUser()
            if PLAN.burst:
                self.arrive_together(pid)
                raise StopUser()
            self.take_part(pid)
        except Abandon as problem:
            LOG.abandoned.append({"pid": pid, "why": str(problem)})
        if LOG.pending.get(pid):
            LOG.abandoned.append({"pid": pid, "why": "stopped with an answer in doubt"})

    def enter(self, pid: str) -> tuple[str, str]:
        """Entry from a Prolific link: the signed cookie; return the consent page's path, HTML."""
        query = urlencode(
            {"PROLIFIC_PID": pid, "STUDY_ID": f"STUDY{PLAN.run_tag}", "SESSION_ID": f"S{pid}"}
        )
        base = f"/s/{PLAN.slug}/"
        path = self.follow(self.send("GET", f"{base}?{query}", "entry GET", expect=(302,)))
        LOG.entered.append(pid)
        return path, self.page(path, "consent GET")

    def arrive(self, pid: str) -> str:
        """Entry from a Prolific link, consent, demographics, instructions: at question 1."""
        path, html = self.enter(pid)
        self.fetch_static(html)
        self.pause(0.5)
        path = self.post_form(path, "consent POST", html, [("decision", "agree")])
        html = self.page(path, "demographics GET")
        self.pause(0.5)
        fields = [("gender", "undisclosed"), ("age_group", "undisclosed")]
        path = self.post_form(path, "demographics POST", html, fields)
        html = self.page(path, "instructions GET")
        self.pause(0.5)
        return self.post_form(path, "instructions POST", html, [])

    def arrive_together(self, pid: str) -> None:
        """A burst arrival: wait until every burst user has spawned, then arrive at once."""
        if next(_spawned) >= PLAN.burst:
            BURST_GATE.set()
        BURST_GATE.wait(60)
        released = time.monotonic()
        path = self.arrive(pid)
        if not QUESTION_PATH_RE.search(path):
            raise Abandon(f"arrival ended at {path}, not at a question")
        LOG.assigned.append(pid)
        LOG.to_question.append(time.monotonic() - released)

    def post_minimal(self, pid: str) -> None:
        """Enter once (cookie, CSRF token), then post the minimal answer view until the end."""
        _, html = self.enter(pid)
        match = CSRF_RE.search(html)
        if not match:
            raise Abandon("consent GET: no CSRF token")
        LOG.ready += 1
        data = [("csrfmiddlewaretoken", match.group(1))]
        while not STOP.is_set():
            self.pause(PLAN.think_seconds)
            if STOP.is_set():
                return
            path = MINIMAL_PATH.format(slug=PLAN.slug)
            self.send(
                "POST", path, "minimal POST", expect=(200,), data=data, headers=SCRIPT_HEADERS
            )
            LOG.minimal += 1

    def take_part(self, pid: str) -> None:
        path = self.arrive(pid)
        shown = None  # the question as the page's script received it (JSON), if it did
        while (match := QUESTION_PATH_RE.search(path)) is not None:
            if STOP.is_set():
                return
            if shown is None:
                shown = self.question_page(path)
            path, shown = self.answer(pid, path, int(match.group(1)), shown)
        if not path.endswith("/debrief/"):
            raise Abandon(f"questions ended at {path}, not at the debrief")
        html = self.page(path, "debrief GET")
        self.pause(0.5)
        final = self.post_form(path, "debrief POST", html, [])  # straight back to Prolific
        code = parse_qs(urlsplit(final).query).get("cc", [""])[0]
        if not code:
            raise Abandon(f"completion redirect without a code: {final}")
        LOG.completed.append({"pid": pid, "code": code})

    def question_page(self, path: str) -> "Shown":
        """A question's page (the first, or every one without JavaScript), read as the
        participant sees it."""
        html = self.page(path, "question GET")
        form = FORM_RE.search(html)
        token = TOKEN_RE.search(html)
        csrf = CSRF_RE.search(html)
        if not form or not token or not csrf:
            raise Abandon(f"no answer form on {path}")
        told = ATTENTION_RE.search(html)
        confidences = {label.strip(): value for value, label in CONFIDENCE_RE.findall(html)}
        self.confidences = confidences  # the same scale on every question
        return Shown(
            token=token.group(1),
            csrf=csrf.group(1),
            images=IMG_RE.findall(form.group(0)),
            photos={int(n): value for n, value in CANDIDATE_RE.findall(html)},
            told=(int(told.group(1)), confidences[told.group(2)]) if told else None,
        )

    def shown_by_script(self, data: dict, csrf: str) -> "Shown":
        """The next question as the page's script shows it, from the acknowledgement."""
        told = data["attention"]
        by_label = self.confidences
        return Shown(
            token=data["token"],
            csrf=csrf,
            images=[data["query_image"], *(c["url"] for c in data["candidates"])],
            photos={c["number"]: str(c["number"]) for c in data["candidates"]},
            told=(told["photo"], by_label[told["label"]]) if told else None,
        )

    def answer(
        self, pid: str, path: str, position: int, shown: "Shown"
    ) -> tuple[str, "Shown | None"]:
        """Fetch a question's images, think, answer; return where the server sends us and,
        with JavaScript, the next question it sent along (else None)."""
        for url in shown.images:
            self.send("GET", url, "image", expect=(200,))
        scale = list(self.confidences.values())
        if shown.told:
            selected, none, confidence = [shown.photos[shown.told[0]]], False, shown.told[1]
        elif random.random() < 0.2:
            selected, none, confidence = [], True, random.choice(scale)
        else:
            picks = random.sample(sorted(shown.photos), random.choice((1, 1, 2)))
            selected, none = sorted(shown.photos[n] for n in picks), False
            confidence = random.choice(scale)
        self.pause(PLAN.think_seconds)
        fields = [("csrfmiddlewaretoken", shown.csrf), ("question", shown.token)]
        fields += [("confidence", confidence), *(("selected", photo) for photo in selected)]
        if none:
            fields.append(("none_of_these", "on"))
        answer = {
            "pid": pid,
            "position": position,
            "token": shown.token,
            "selected": sorted(int(photo) for photo in selected),
            "none": none,
            "confidence": int(confidence),
        }
        LOG.pending[pid] = answer
        following, then = self.post_answer(path, fields, shown.csrf)
        # Acknowledged: the server sends the participant on (a later question, the debrief).
        later = QUESTION_PATH_RE.search(following)
        if (later and int(later.group(1)) <= position) or not (
            later or following.endswith(("/debrief/", "/done/"))
        ):
            raise Abandon(f"answer to question {position} was not taken: sent to {following}")
        LOG.acked.append(answer)
        del LOG.pending[pid]
        return following, then

    def post_answer(
        self, path: str, fields: list[tuple[str, str]], csrf: str
    ) -> tuple[str, "Shown | None"]:
        """Post an answer as the page's script does (JSON back, with the next question) or as
        a plain form (a redirect); return (where next, the next question if it came along)."""
        if not PLAN.javascript:
            response = self.send("POST", path, "answer POST", expect=(302,), data=fields)
            return self.follow(response), None
        response = self.send(
            "POST", path, "answer POST", expect=(200,), data=fields, headers=SCRIPT_HEADERS
        )
        try:
            data = response.json()
        except ValueError as error:
            raise Abandon(f"answer on {path}: no JSON in the acknowledgement") from error
        shown = data.get("question")
        return data["next"], self.shown_by_script(shown, csrf) if shown else None


@dataclass
class Shown:
    """A question as the participant sees it: what to send back and which images to load."""

    token: str
    csrf: str
    images: list[str]
    photos: dict[int, str]  # "Photo N" -> the value its checkbox posts
    told: tuple[int, str] | None  # an attention check's (photo, confidence value)
