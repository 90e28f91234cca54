"""Database reads for a report: the responses frame, arrivals, and how match sets were ranked."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from analysis import columns as c
from analysis.outcomes import coerce_export
from survey.exports import LONG_COLUMNS, responses_long
from survey.models import Participant, Study


def study_responses_frame(*, study: Study) -> pd.DataFrame:
    """The study's long export (survey.exports.responses_long) with analysis dtypes."""
    frame = pd.DataFrame.from_records(list(responses_long(study)), columns=LONG_COLUMNS)
    frame = coerce_export(frame)
    for col in (c.SERVED_AT, c.ANSWERED_AT):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    for col in ("candidate_order", "selected_photos"):
        if col in frame:
            frame[col] = frame[col].fillna("").astype(str)
    return frame


MATCH_SET_READINGS = {
    "image": "image-level top-K of the second recognizer (the same ranking as Metric 1, as in "
    "the paper; several photos of one person may appear among the candidates)",
    "identity": "identity-level top-K of the second recognizer (each candidate a different "
    "person; the paper shows the image-level top-K)",
}


def match_set_mode(*, study: Study) -> str:
    """One sentence: how the study's candidates were ranked (from the match sets' provenance)."""
    modes = Counter(
        str(mode) if mode else "not recorded"
        for mode in study.match_sets.values_list("provenance__match_sets", flat=True)
    )
    if not modes:
        return ""
    parts = [
        f"{MATCH_SET_READINGS.get(mode, mode)}" + (f" ({n} match sets)" if len(modes) > 1 else "")
        for mode, n in sorted(modes.items())
    ]
    sentence = "Match sets: " + "; ".join(parts) + "."
    if "not recorded" in modes:
        sentence += (
            " 'Not recorded': imported without build_study's provenance, so whether candidates "
            "are image- or identity-level is not known to the report."
        )
    return sentence


def study_arrivals(*, study: Study) -> dict[str, int]:
    """Participants by how far they got before the first question (not in the export)."""
    people = Participant.objects.filter(study=study)
    silent = people.filter(responses__isnull=True)
    status = Participant.Status
    return {
        "entered": people.count(),
        "declined_consent": silent.filter(status=status.NO_CONSENT).count(),
        "left_before_questions": silent.filter(
            status__in=[status.RETURNED, status.TIMED_OUT, status.FAILED_ATTENTION]
        ).count(),
        "in_progress_before_questions": silent.filter(status=status.ACTIVE).count(),
        "reached_questions": people.filter(responses__isnull=False).distinct().count(),
    }
