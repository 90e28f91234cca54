"""Shared by the data-protection tests: finished participants, old-style audit rows, and a
search of every survey table for a raw identifier."""

import json

from django.apps import apps

from survey import services
from survey.models import AuditEvent, Participant, Study
from tests.survey.helpers import answer_current, at_questions

Action = AuditEvent.Action


def finished(study: Study, pid: str) -> Participant:
    """A participant who answered every question and completed the study."""
    p = at_questions(study, pid=pid)
    while p.step == Participant.Step.QUESTIONS:
        p = answer_current(p).participant
    return services.participant_finish(participant=p)


def old_style_prolific_audit(participant: Participant) -> AuditEvent:
    """An audit row as the Prolific operations wrote them before issue 15: the raw SESSION_ID."""
    return AuditEvent.objects.create(
        actor="dan",
        action=Action.PROLIFIC_BONUS,
        study=participant.study,
        subject=participant.pseudonym,
        detail={
            "submission_id": participant.session_id,
            "step": "setup failed",
            "answer": f"Submission {participant.session_id} has not taken part in this study.",
        },
    )


def survey_rows_mentioning(text: str, *, skip: tuple[type, ...] = ()) -> list[str]:
    """Rows of any survey table whose stored values contain `text`."""
    found = []
    for model in apps.get_app_config("survey").get_models():
        if model in skip:
            continue
        for row in model.objects.values():
            if text in json.dumps(row, default=str):
                found.append(f"{model.__name__} {row['id']}")
    return found
