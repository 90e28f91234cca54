"""Opening and closing a study."""

from collections import Counter

from django.db import transaction
from django.utils import timezone

from survey.models import Study, plan_sha256
from survey.services.locks import locked_study
from survey.services.refusals import FlowError


def study_check_ready(*, study: Study) -> None:
    """Refuse to open a study whose match sets cannot fill every participant's questions."""
    if not study.methods:
        raise FlowError("A study needs match sets before it can open.")
    counts = Counter(study.match_sets.values_list("method", flat=True))
    short = [m for m in study.methods if counts[m] < study.questions_per_method]
    if short:
        raise FlowError(
            f"Each FVR method needs at least {study.questions_per_method} match sets "
            f"(questions per method); too few for: {', '.join(short)}."
        )


@transaction.atomic
def study_set_status(*, study: Study, status: str) -> Study:
    """Open or close a study, stamping when."""
    s = locked_study(study.pk)
    if status == s.status:
        return s
    if status == Study.Status.OPEN:
        study_check_ready(study=s)
    s.status = status
    if status == Study.Status.OPEN:
        s.opened_at = timezone.now()
        if not s.analysis_plan_sha256:
            # Pre-registration: the plan in force at the first opening is the one reported.
            s.analysis_plan_sha256 = plan_sha256(s.analysis_plan)
            s.analysis_plan_frozen_at = s.opened_at
    elif status == Study.Status.CLOSED:
        s.closed_at = timezone.now()
    s.save()
    return s
