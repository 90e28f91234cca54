"""A pilot run: many bots against a server (one started in this process, or a given one)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from survey.bots.bot import BOT_PREFIX, BOT_STUDY_ID, AnswerRecord, Bot, BotResult
from survey.bots.errors import BotError
from survey.bots.observers import Observer, ObserverParams


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
    observer.study_prepare(slug=slug)
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
    results = _bots_drive(bots, concurrency=concurrency, progress=progress)
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
        images_embedded=observer.images_embedded,
        images_without_face=observer.images_without_face,
    )


def _bots_drive(
    bots: list[Bot],
    *,
    concurrency: int,
    progress: Callable[[BotResult, int], None] | None,
) -> list[BotResult]:
    """Run the bots, `concurrency` at a time; their results in the bots' order."""
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
    return results


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
