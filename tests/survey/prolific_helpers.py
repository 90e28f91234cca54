"""What the Prolific tests (tests/survey/test_prolific_*.py) share: a study with a Prolific
STUDY_ID and its completed participant (the fixtures `study` and `participant`: import both,
as `study_fixture` and `participant_fixture`, where `participant` is used), participants made
to measure, the stored verification time, and a replaying transport that records whether each
call ran inside a database transaction. Prolific's recorded answers are in
tests/survey/prolific_replay.py.
"""

import pytest
import requests
from django.db import transaction

from survey.models import Participant, pseudonymise
from tests.factories import StudyFactory
from tests.survey.prolific_replay import PID, STUDY_ID, SUBMISSION, ReplayAdapter


@pytest.fixture(name="study")
def study_fixture():
    return StudyFactory(slug="s1", prolific_study_id=STUDY_ID)


@pytest.fixture(name="participant")
def participant_fixture(study) -> Participant:
    return Participant.objects.create(
        study=study,
        prolific_pid=PID,
        pseudonym=pseudonymise(PID),
        session_id=SUBMISSION,
        status=Participant.Status.COMPLETED,
    )


def completed(study, pid: str, session: str, **fields: object) -> Participant:
    return Participant.objects.create(
        study=study,
        prolific_pid=pid,
        pseudonym=pseudonymise(pid),
        session_id=session,
        status=fields.pop("status", Participant.Status.COMPLETED),
        **fields,
    )


def verified_at(participant: Participant):
    return Participant.objects.values_list("session_verified_at", flat=True).get(pk=participant.pk)


class TransactionWatch(ReplayAdapter):
    """Records, for every request, whether the database connection was inside a transaction."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.in_transaction: list[bool] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.in_transaction.append(transaction.get_connection().in_atomic_block)
        return super().send(request, **kwargs)
