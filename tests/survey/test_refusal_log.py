"""The refused-request log is bounded: a hostile client cannot fill the database with it."""

import logging
from datetime import timedelta

import pytest

from survey import services
from survey.models import RefusedRequest
from tests.factories import study_with_match_sets
from tests.survey.helpers import entered

pytestmark = pytest.mark.django_db


def refuse(**where: object) -> None:
    services.refusal_log(error=services.AnswerRefused("That question is not yours."), **where)


def full_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refusal log full" in r.getMessage()]


def test_refusals_of_one_participant_are_stored_up_to_the_cap_then_only_logged(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.FVR_REFUSALS_PER_PARTICIPANT = 3
    study = study_with_match_sets(per_method=1)
    p, other = entered(study, pid="PIDCAP0001"), entered(study, pid="PIDCAP0002")

    with caplog.at_level(logging.WARNING, logger="survey.services"):
        for _ in range(6):
            refuse(study=study, participant=p)
        refuse(study=study, participant=other)

    assert RefusedRequest.objects.filter(participant=p).count() == 3
    assert RefusedRequest.objects.filter(participant=other).count() == 1
    # The first refusal past the cap is logged; the next ones within the minute only counted.
    (warning,) = full_warnings(caplog)
    assert f"participant {p.pseudonym}" in warning
    assert p.prolific_pid not in caplog.text


def test_refusals_before_admission_are_capped_per_study_and_hour(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.FVR_ANONYMOUS_REFUSALS_PER_HOUR = 2
    study, elsewhere = study_with_match_sets(per_method=1), study_with_match_sets(per_method=1)
    refuse(study=study)
    # A row from the hour before does not count against this hour's cap.
    RefusedRequest.objects.update(at=RefusedRequest.objects.get().at - timedelta(hours=1))

    with caplog.at_level(logging.WARNING, logger="survey.services"):
        for _ in range(5):
            refuse(study=study)
        refuse(study=elsewhere)

    assert RefusedRequest.objects.filter(study=study, participant=None).count() == 3
    assert RefusedRequest.objects.filter(study=elsewhere).count() == 1
    (warning,) = full_warnings(caplog)
    assert f"study {study.slug}" in warning
