"""Data migrations keep what participants did: run forwards (and back) on rows made by the
historical models."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("survey", "0007_assignment_slots")
AFTER = ("survey", "0008_served_at_on_participant")
SHOWN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def latest_after():
    """Back to the latest migrations after the test, whatever it migrated to."""
    leaf = MigrationExecutor(connection).loader.graph.leaf_nodes("survey")
    yield
    MigrationExecutor(connection).migrate(leaf)


def migrated_to(target: tuple[str, str]):
    """Migrate the test database to ``target``; the historical models there."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_0008_moves_the_current_questions_shown_time_to_the_participant_and_back(
    latest_after,
) -> None:
    apps = migrated_to(BEFORE)
    Study = apps.get_model("survey", "Study")
    MatchSet = apps.get_model("survey", "MatchSet")
    Participant = apps.get_model("survey", "Participant")
    Assignment = apps.get_model("survey", "Assignment")
    Response = apps.get_model("survey", "Response")
    study = Study.objects.create(
        slug="migrated", title="M", completion_code="C", no_consent_code="N"
    )
    sets = [
        MatchSet.objects.create(
            study=study, key=f"m{i}", method="naive", query_image=f"studies/q{i}.png"
        )
        for i in range(3)
    ]

    def participant(name: str, step: str, position: int):
        p = Participant.objects.create(
            study=study, pseudonym=name, session_id=f"S{name}", step=step
        )
        p.current_position = position
        p.save()
        return p

    on_two = participant("on-two", "questions", 2)
    not_shown = participant("not-shown", "questions", 1)
    debrief = participant("debrief", "debrief", 3)
    for p in (on_two, not_shown, debrief):
        for position, match_set in enumerate(sets, start=1):
            Assignment.objects.create(participant=p, match_set=match_set, position=position)
    Assignment.objects.filter(participant=on_two, position=1).update(served_at=SHOWN)
    answered = Assignment.objects.get(participant=on_two, position=1)
    Response.objects.create(
        participant=on_two,
        assignment=answered,
        selected_ranks=[1],
        confidence=3,
        any_correct=True,
        served_at=SHOWN,
        answered_at=SHOWN + timedelta(seconds=4),
    )
    Assignment.objects.filter(participant=on_two, position=2).update(
        served_at=SHOWN + timedelta(seconds=5)
    )

    apps = migrated_to(AFTER)
    Participant = apps.get_model("survey", "Participant")
    shown = dict(Participant.objects.values_list("pseudonym", "current_served_at"))
    assert shown == {
        "on-two": SHOWN + timedelta(seconds=5),  # its current question's time
        "not-shown": None,  # its current question was not shown yet
        "debrief": None,  # past the questions: the answers keep their times
    }

    apps = migrated_to(BEFORE)  # and back: every shown question's time again
    Assignment = apps.get_model("survey", "Assignment")
    times = dict(
        Assignment.objects.filter(participant__pseudonym="on-two").values_list(
            "position", "served_at"
        )
    )
    assert times == {1: SHOWN, 2: SHOWN + timedelta(seconds=5), 3: None}


@pytest.mark.django_db(transaction=True)
def test_0009_settles_the_slots_of_participants_who_completed(latest_after) -> None:
    apps = migrated_to(AFTER)
    Study = apps.get_model("survey", "Study")
    Participant = apps.get_model("survey", "Participant")
    AssignmentSlot = apps.get_model("survey", "AssignmentSlot")
    study = Study.objects.create(
        slug="settled", title="S", completion_code="C", no_consent_code="N"
    )
    statuses = ["completed", "active", "failed_attention", None]
    for seq, status in enumerate(statuses, start=1):
        holder = None
        if status is not None:
            holder = Participant.objects.create(
                study=study, pseudonym=status, session_id=f"S{seq}", status=status
            )
        AssignmentSlot.objects.create(
            study=study, seq=seq, design="d", match_sets=[1], participant=holder
        )

    apps = migrated_to(("survey", "0009_settled_assignment_slots"))
    AssignmentSlot = apps.get_model("survey", "AssignmentSlot")
    settled = dict(AssignmentSlot.objects.values_list("seq", "settled"))
    assert settled == {1: True, 2: False, 3: False, 4: False}  # completed ones only
