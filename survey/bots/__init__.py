"""Simulated participants: bots that take a study through its real HTTP pages.

- ``bot``: one bot (`Bot`) driving the participant pages over HTTP, and what it records
  (`BotResult`, `AnswerRecord`); careless bots and attention checks.
- ``pages``: the HTML parser that reads a page as a bot needs it.
- ``observers``: the observer model (how an attentive bot answers), its two decision rules,
  the ``random`` observer and the registry of observers (`observer_register`,
  `observer_names`, `observer_create`). Observers that embed images with a recognizer
  (``dlib-resnet``, the default, and the other recognizers) are registered by the
  reconstruction app (`reconstruction.studies.observers`): the survey never imports torch.
- ``runs``: `bots_run` (many bots, a few at a time), its `PilotRun`, and `LocalServer`
  (the project served in a thread of this process).
- ``expectations``: the observer's expected accuracy per method, from its own P(correct).

The parameters (``ObserverParams``) are stated in ``docs/pilot.md``; the defaults were
chosen so that dlib-resnet on real LFW photos lands near, not at, its ceiling.
"""

from survey.bots.bot import (
    BOT_PREFIX,
    BOT_SESSION_PREFIX,
    BOT_STUDY_ID,
    RATE_LIMIT_RETRIES,
    USER_AGENT,
    AnswerRecord,
    Bot,
    BotResult,
    bot_session_id,
)
from survey.bots.errors import BotError
from survey.bots.expectations import MethodExpectation, observer_expected_accuracy
from survey.bots.observers import (
    CONFIDENCE_LEVELS,
    DEFAULT_OBSERVER,
    OBSERVERS,
    RANDOM_OBSERVER,
    Decision,
    Observer,
    ObserverFactory,
    ObserverParams,
    RandomObserver,
    observer_create,
    observer_names,
    observer_register,
    softmax_decide,
    uniform_decide,
)
from survey.bots.pages import ATTENTION_RE, VOID_TAGS, PageParser, page_parse
from survey.bots.runs import LocalServer, PilotRun, bots_run

__all__ = [
    "ATTENTION_RE",
    "BOT_PREFIX",
    "BOT_SESSION_PREFIX",
    "BOT_STUDY_ID",
    "CONFIDENCE_LEVELS",
    "DEFAULT_OBSERVER",
    "OBSERVERS",
    "RANDOM_OBSERVER",
    "RATE_LIMIT_RETRIES",
    "USER_AGENT",
    "VOID_TAGS",
    "AnswerRecord",
    "Bot",
    "BotError",
    "BotResult",
    "Decision",
    "LocalServer",
    "MethodExpectation",
    "Observer",
    "ObserverFactory",
    "ObserverParams",
    "PageParser",
    "PilotRun",
    "RandomObserver",
    "bot_session_id",
    "bots_run",
    "observer_create",
    "observer_expected_accuracy",
    "observer_names",
    "observer_register",
    "page_parse",
    "softmax_decide",
    "uniform_decide",
]
