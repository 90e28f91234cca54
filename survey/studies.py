"""Studies as participants' requests see them, kept per process for a few seconds.

Every participant request needs its study (K, time limit, speeder threshold, codes, the
pages' texts). Read with the participant (a join), the study's 30-odd columns cost more app
CPU than the participant's own row on every page and answer (benchmarks/load/profile_flow.py);
a study's settings change rarely and never per participant. So a process reads a study once
and keeps it for `KEPT_SECONDS`:

- a study saved or deleted in this process is dropped at once (signals below): a researcher's
  edit is seen by the next request of the process that made it;
- another process (another gunicorn worker or host) sees the edit within `KEPT_SECONDS`. A
  participant request in that window uses the previous settings, as it would have had it
  arrived a few seconds earlier. What must be exact across processes (places, caps, opening
  and closing) is decided under the study row's lock (survey/services/locks.py), which reads
  the row itself, never this copy.

Each caller gets its own copy: nothing one request sets on its study reaches another's.
"""

import copy
import time
from dataclasses import dataclass, replace

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from survey.models import Study

KEPT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Kept:
    read_at: float  # time.monotonic()
    study: Study
    question_count: int | None = None  # Study.question_count, once asked for


_kept: dict[int, _Kept] = {}


def _kept_study(study_id: int) -> _Kept:
    now = time.monotonic()
    kept = _kept.get(study_id)
    if kept is None or now - kept.read_at > KEPT_SECONDS:
        kept = _kept[study_id] = _Kept(now, Study.objects.get(pk=study_id))
    return kept


def study_of(study_id: int) -> Study:
    """The study ``study_id``, read at most once per `KEPT_SECONDS` by this process.

    Raises Study.DoesNotExist when there is none."""
    return copy.copy(_kept_study(study_id).study)


def study_question_count(study: Study) -> int:
    """`Study.question_count` (a query of the study's methods), kept with the study: the pages
    before the questions show it, when the participant's own count is not decided yet."""
    kept = _kept_study(study.pk)
    if kept.question_count is None:
        kept = _kept[study.pk] = replace(kept, question_count=kept.study.question_count)
    return kept.question_count


def studies_forget() -> None:
    """Drop every kept study (tests, and a process that must see an edit at once)."""
    _kept.clear()


@receiver(post_save, sender=Study, dispatch_uid="survey.studies.forget_saved")
@receiver(post_delete, sender=Study, dispatch_uid="survey.studies.forget_deleted")
def _study_changed(sender: type[Study], instance: Study, **kwargs: object) -> None:
    _kept.pop(instance.pk, None)
