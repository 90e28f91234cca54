"""The participant's path through a study, as an explicit ordered list of steps."""

from django.urls import reverse

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
    return reverse(URL_NAMES[participant.step], kwargs={"slug": slug})


def question_url(slug: str, position: int, total: int | None = None) -> str:
    """The URL of question ``position``; with ``total``, past the last question the debrief's."""
    if total is not None and position > total:
        return reverse(URL_NAMES[Step.DEBRIEF], kwargs={"slug": slug})
    return reverse("survey:question", kwargs={"slug": slug, "position": position})


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
