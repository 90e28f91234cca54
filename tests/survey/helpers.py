"""Drive participants through the flow with the services (no HTTP)."""

import random

from django.http import HttpRequest
from django.test import Client

from survey import services
from survey.browser import browser_participants
from survey.models import Assignment, Participant, Study


def entered(study: Study, pid: str = "PID000001", session: str | None = None) -> Participant:
    return services.participant_enter(
        study=study,
        prolific_pid=pid,
        study_id=study.prolific_study_id or "STUDY0001",
        session_id=session or f"SESSION{pid}",
    )


def at_questions(
    study: Study, pid: str = "PID000001", rng: random.Random | None = None
) -> Participant:
    p = entered(study, pid=pid, session=f"S{pid}")
    p = services.participant_consent(participant=p, consent=True)
    p = services.participant_demographics_save(participant=p, gender="woman", age_group="30-39")
    return services.participant_start_questions(participant=p, rng=rng)


def current(p: Participant) -> Assignment:
    return Assignment.objects.get(participant=p, position=p.current_position)


def answer_current(p: Participant, *, follow_checks: bool = True, **overrides: object):
    """Answer the current question: attention checks as instructed unless told otherwise."""
    a = current(p)
    if a.is_attention_check and follow_checks:
        fields = {
            "selected_ranks": [a.attention_rank],
            "none_selected": False,
            "confidence": a.attention_confidence,
        }
    elif a.is_attention_check:
        wrong = a.attention_rank % p.study.k + 1
        fields = {
            "selected_ranks": [wrong],
            "none_selected": False,
            "confidence": a.attention_confidence,
        }
    else:
        fields = {"selected_ranks": [1], "none_selected": False, "confidence": 3}
    fields.update(overrides)
    return services.response_record(participant=p, question=a, **fields)


def browser_participant_id(client: Client, study: Study) -> int | None:
    """The participant id a test client's signed cookie names for ``study`` (survey.browser)."""
    request = HttpRequest()
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    return browser_participants(request).get(study.slug)
