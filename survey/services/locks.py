"""The two row locks of the participant flow, and the order they are taken in.

The study row orders arrivals and question assignment; the participant row orders each
participant's own writes. Whoever takes both takes the study's first.
"""

from survey.models import Participant, Study


def locked_participant(participant: Participant) -> Participant:
    """Lock the participant's row for this transaction.

    Only that row (`of=self`: a plain FOR UPDATE over the join would lock the study row too and
    serialise every participant behind it), and FOR NO KEY UPDATE, which rows that merely refer
    to the participant (visits, responses, logs) do not wait for.
    """
    return (
        Participant.objects.select_for_update(of=("self",), no_key=True)
        .select_related("study")
        .get(pk=participant.pk)
    )


def locked_study(study_id: int) -> Study:
    """Lock the study row: the one lock that orders arrivals and question assignment."""
    return Study.objects.select_for_update(no_key=True).get(pk=study_id)
