"""Drive participants through the flow with the services (no HTTP)."""

import random
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.http import HttpRequest
from django.test import Client

from survey import services
from survey.browser import browser_participants
from survey.models import Assignment, Participant, Study
from tests.factories import STUDY_ID, id_for


def entered(study: Study, pid: str = "PID000001", session: str | None = None) -> Participant:
    """Enter as the participant ``pid``: a label such as "PID000001" stands for the
    Prolific-format ID it names (tests.factories.id_for), as does ``session``."""
    return services.participant_enter(
        study=study,
        prolific_pid=id_for(study, pid),
        study_id=study.prolific_study_id or STUDY_ID,
        session_id=id_for(study, session or f"SESSION{pid}"),
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


def photos_of(a: Assignment, ranks: list[int]) -> list[int]:
    """The photo numbers under which the candidates of these ranks are shown in question ``a``
    (participants post photo numbers; tests often mean a rank, e.g. the true candidate)."""
    k = a.participant.study.k
    return [a.photo_number(rank, k) for rank in ranks]


def answer_current(p: Participant, *, follow_checks: bool = True, **overrides: object):
    """Answer the current question: attention checks as instructed unless told otherwise.

    ``selected_ranks=[...]`` is translated into the photo numbers a participant would post."""
    a = current(p)
    if a.is_attention_check and follow_checks:
        ranks = [a.attention_rank]
        fields = {"none_selected": False, "confidence": a.attention_confidence}
    elif a.is_attention_check:
        ranks = [a.attention_rank % p.study.k + 1]
        fields = {"none_selected": False, "confidence": a.attention_confidence}
    else:
        ranks = [1]
        fields = {"none_selected": False, "confidence": 3}
    if "selected_ranks" in overrides:
        ranks = overrides.pop("selected_ranks")
    fields["selected_photos"] = photos_of(a, ranks) if isinstance(ranks, list) else ranks
    fields.update(overrides)
    return services.response_record(participant=p, question=a, **fields)


def browser_participant_id(client: Client, study: Study) -> int | None:
    """The participant id a test client's signed cookie names for ``study`` (survey.browser)."""
    request = HttpRequest()
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    return browser_participants(request).get(study.slug)


def simulate(slug: str, out: Path, **options: object) -> str:
    """Run `simulate_participants` on the study; return what it printed."""
    stdout = StringIO()
    call_command("simulate_participants", slug, out=str(out), stdout=stdout, **options)
    return stdout.getvalue()
