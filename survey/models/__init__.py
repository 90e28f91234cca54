"""The participant study: studies, match sets, participants, assignments and responses.

Invariants live in the database (unique and check constraints); writes that touch several
rows are service functions in `survey/services/`. The models live in submodules named for what
they hold (`study`, `participants`, `records`) and are all importable from here, so that
``from survey.models import Participant`` and migrations (``survey.models.image_upload_to``)
keep working; their app label is still ``survey``.
"""

from survey.models.participants import (
    Assignment,
    Confidence,
    PageVisit,
    Participant,
    ParticipantQuerySet,
    Response,
    pseudonymise,
)
from survey.models.records import AuditEvent, ProlificBonus, RateCounter, RefusedRequest
from survey.models.slots import AssignmentSlot
from survey.models.study import (
    Candidate,
    FvrMethod,
    MatchSet,
    Study,
    StudyQuerySet,
    image_upload_to,
    methods_in_order,
    plan_sha256,
)

__all__ = [
    "Assignment",
    "AssignmentSlot",
    "AuditEvent",
    "Candidate",
    "Confidence",
    "FvrMethod",
    "MatchSet",
    "PageVisit",
    "Participant",
    "ParticipantQuerySet",
    "ProlificBonus",
    "RateCounter",
    "RefusedRequest",
    "Response",
    "Study",
    "StudyQuerySet",
    "image_upload_to",
    "methods_in_order",
    "plan_sha256",
    "pseudonymise",
]
