"""The participant's path through a study, as an explicit ordered list of steps."""

from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import get_script_prefix, reverse

from survey.models import Participant

Step = Participant.Step

# The order participants go through (oTree's page_sequence); DONE ends every path.
PAGE_SEQUENCE: list[str] = [
    Step.CONSENT,
    Step.DEMOGRAPHICS,
    Step.INSTRUCTIONS,
    Step.QUESTIONS,
    Step.DEBRIEF,
]

URL_NAMES: dict[str, str] = {
    Step.CONSENT: "survey:consent",
    Step.DEMOGRAPHICS: "survey:demographics",
    Step.INSTRUCTIONS: "survey:instructions",
    Step.DEBRIEF: "survey:debrief",
    Step.DONE: "survey:done",
}


def step_url(participant: Participant) -> str:
    """The URL of the page the participant should be on now."""
    slug = participant.study.slug
    if participant.step == Step.QUESTIONS:
        return question_url(slug, participant.current_position)
    return _reversed(get_script_prefix(), URL_NAMES[participant.step], slug)


def question_url(slug: str, position: int, total: int | None = None) -> str:
    """The URL of question ``position``; with ``total``, past the last question the debrief's."""
    if total is not None and position > total:
        return _reversed(get_script_prefix(), URL_NAMES[Step.DEBRIEF], slug)
    return _reversed(get_script_prefix(), "survey:question", slug, position)


@lru_cache(maxsize=8192)
def _reversed(prefix: str, name: str, slug: str, position: int | None = None) -> str:
    """A participant page's URL, made once per process: every answer names three (the reply's
    next question, the one after it, where the participant is), and reversing each costs more
    than the rest of the reply's URLs together. Keyed by the script prefix too, which
    `reverse` reads from the thread."""
    kwargs: dict[str, object] = {"slug": slug}
    if position is not None:
        kwargs["position"] = position
    return reverse(name, kwargs=kwargs)


@receiver(setting_changed, dispatch_uid="survey.flow.urls_forget")
def _urls_forget(*, setting: str, **kwargs: object) -> None:
    """Other URLs (a test's ROOT_URLCONF) make other participant page URLs."""
    if setting == "ROOT_URLCONF":
        _reversed.cache_clear()


def progress(participant: Participant, questions: int | None = None) -> tuple[int, int]:
    """(steps done, steps in all) for the progress bar, counting each question as a step.

    ``questions``: the study's question count, when the caller already has it (one query).
    """
    if questions is None:
        questions = participant.study.question_count
    total = len(PAGE_SEQUENCE) - 1 + questions
    if participant.step == Step.DONE:
        return total, total
    index = PAGE_SEQUENCE.index(participant.step)
    done = index if index <= PAGE_SEQUENCE.index(Step.QUESTIONS) else index - 1 + questions
    if participant.step == Step.QUESTIONS:
        done += participant.current_position - 1
    return done, total
