"""What the tampering tests (tests/survey/test_tampering_*.py) share.

The study they tamper with (the `study` fixture: a test module imports `study_fixture`), a second
participant's Prolific parameters, the rows a refused request must leave as it was, the
refusals it logged, and a participant who finished.
"""

import pytest
from django.test import Client

from survey.models import (
    Assignment,
    AuditEvent,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
)
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets
from tests.survey import helpers
from tests.survey.http_helpers import at_questions, url

OTHER = {
    "PROLIFIC_PID": prolific_id("PIDOTHER001"),
    "STUDY_ID": STUDY_ID,
    "SESSION_ID": prolific_id("SESSOTHER1"),
}


@pytest.fixture(name="study")
def study_fixture():
    """The study every tampering test tampers with (fixture `study`)."""
    return study_with_match_sets(prolific_study_id=STUDY_ID)


def state(study) -> tuple:
    """Every row a refused request must leave as it was."""
    return (
        list(
            Participant.objects.filter(study=study)
            .order_by("pk")
            .values_list(
                "pk", "step", "status", "current_position", "completion_code", "attention_failures"
            )
        ),
        list(
            Response.objects.filter(participant__study=study)
            .order_by("pk")
            .values_list("pk", "assignment_id", "selected_ranks", "none_selected", "confidence")
        ),
        Assignment.objects.filter(participant__study=study).count(),
        list(PageVisit.objects.order_by("pk").values_list("pk", "submitted_at")),
        AuditEvent.objects.count(),
    )


def refusals(reason: str) -> list[str]:
    return list(RefusedRequest.objects.filter(reason=reason).values_list("detail", flat=True))


def completed(client: Client, study) -> Participant:
    """A participant who answered every question and finished, in `client`'s session."""
    p = at_questions(client, study)
    for _ in range(study.question_count):
        p = helpers.answer_current(p).participant
    assert client.post(url("debrief", study)).status_code == 302
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    return p
