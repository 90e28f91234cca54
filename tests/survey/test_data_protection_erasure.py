"""Data protection: erasing one person's data (survey.dataprotection.erasure)."""

import io
import json
import sys
from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from survey import services
from survey.dataprotection import DataProtectionError, participant_delete, submission_hash
from survey.models import (
    Assignment,
    AuditEvent,
    PageVisit,
    Participant,
    ProlificBonus,
    RefusedRequest,
    Response,
    pseudonymise,
)
from tests.factories import prolific_id, study_with_match_sets
from tests.survey.data_protection_helpers import (
    finished,
    old_style_prolific_audit,
    survey_rows_mentioning,
)
from tests.survey.helpers import answer_current, at_questions, entered

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def rows_of(participant_ids: list[int]) -> dict[str, list]:
    """Every row that belongs to these participants, as plain values (for before/after)."""
    return {
        "participants": list(
            Participant.objects.filter(pk__in=participant_ids).order_by("pk").values()
        ),
        "assignments": list(
            Assignment.objects.filter(participant__in=participant_ids).order_by("pk").values()
        ),
        "responses": list(
            Response.objects.filter(participant__in=participant_ids).order_by("pk").values()
        ),
        "visits": list(
            PageVisit.objects.filter(participant__in=participant_ids).order_by("pk").values()
        ),
        "refused": list(
            RefusedRequest.objects.filter(participant__in=participant_ids).order_by("pk").values()
        ),
    }


def test_delete_participant_erases_everything_of_the_person_and_nobody_else() -> None:
    study = study_with_match_sets(per_method=10)
    others = [finished(study, "PIDKEEP009"), at_questions(study, pid="PIDKEEP010")]
    target = at_questions(study, pid="PIDGONE011")
    for _ in range(3):
        target = answer_current(target).participant
    # A refused answer (to a question that is not the current one) is logged with the person.
    later = Assignment.objects.get(participant=target, position=target.current_position + 1)
    with pytest.raises(services.AnswerRefused):
        services.response_record(
            participant=target,
            question=later,
            selected_photos=[1],
            none_selected=False,
            confidence=3,
        )
    bonus = ProlificBonus.objects.create(
        study=study, submission_id="SUBMISSION11", participant=target, amount_pence=25
    )
    keep = rows_of([p.pk for p in others])
    gone = rows_of([target.pk])
    assert gone["responses"]
    assert gone["visits"]
    assert gone["refused"]

    result = participant_delete(
        study=study,
        prolific_pid=prolific_id("PIDGONE011"),
        actor="staff-alice",
        reason=f"Request from {prolific_id('PIDGONE011')} via Prolific message",
    )

    assert not any(rows_of([target.pk]).values())
    assert rows_of([p.pk for p in others]) == keep
    assert result.deleted == {
        "participants": 1,
        "assignments": len(gone["assignments"]),
        "responses": 3,
        "page_visits": len(gone["visits"]),
        "refused_requests": 1,
    }
    # Nothing anywhere holds the raw ID; only the audit log still names the pseudonym.
    assert survey_rows_mentioning(prolific_id("PIDGONE011")) == []
    assert survey_rows_mentioning(target.pseudonym, skip=(AuditEvent,)) == []
    event = AuditEvent.objects.get(action=Action.DELETE_PARTICIPANT)
    assert (event.actor, event.study, event.subject) == ("staff-alice", study, target.pseudonym)
    assert event.detail["reason"] == "Request from [Prolific ID removed] via Prolific message"
    assert event.detail["deleted"]["responses"] == 3
    assert event.detail["bonuses_kept"] == 1
    # The payment record stays, unlinked from the deleted person.
    bonus.refresh_from_db()
    assert bonus.participant is None


def test_after_a_deletion_new_arrivals_refill_the_freed_match_sets() -> None:
    study = study_with_match_sets(per_method=10)
    people = [at_questions(study, pid=f"PIDBAL{i:04d}") for i in range(4)]
    participant_delete(study=study, pseudonym=people[0].pseudonym, actor="t", reason="request")
    at_questions(study, pid="PIDBAL0099")

    counted = Participant.objects.filter(study=study).counted_for_balance()
    counts = Counter(
        Assignment.objects.filter(participant__in=counted, is_attention_check=False).values_list(
            "match_set_id", flat=True
        )
    )
    assert len(counts) == 40
    assert max(counts.values()) - min(counts.values()) <= 1


def test_delete_participant_refuses_unknown_people_and_missing_reasons() -> None:
    study = study_with_match_sets()
    p = entered(study, pid="PIDHERE012")
    with pytest.raises(DataProtectionError, match="No participant with that Prolific ID"):
        participant_delete(study=study, prolific_pid="PIDNOTHERE", actor="t", reason="x")
    with pytest.raises(DataProtectionError, match="reason"):
        participant_delete(study=study, pseudonym=p.pseudonym, actor="t", reason="  ")
    with pytest.raises(DataProtectionError, match="one"):
        participant_delete(study=study, actor="t", reason="x")
    assert Participant.objects.filter(pk=p.pk).exists()
    assert not AuditEvent.objects.exists()


def test_delete_participant_keeps_bonus_rows_under_the_submission_hash_only() -> None:
    study = study_with_match_sets()
    p = finished(study, "PIDGONE017")
    session = p.session_id
    old_style_prolific_audit(p)
    ProlificBonus.objects.create(
        study=study,
        submission_id=session,
        participant=p,
        amount_pence=150,
        state=ProlificBonus.State.PAID,
        paid_at=timezone.now(),
    )

    result = participant_delete(study=study, pseudonym=p.pseudonym, actor="t", reason="request")

    # As DATA_PROTECTION.md says: the payment record stays, unlinked, without the submission ID.
    assert survey_rows_mentioning(session) == []
    assert survey_rows_mentioning(p.prolific_pid) == []
    bonus = ProlificBonus.objects.get()
    assert (bonus.participant, bonus.amount_pence) == (None, 150)
    assert bonus.submission_id == f"hash:{submission_hash(session)}"
    assert result.event.detail["audit_events_scrubbed"] == 1
    old = AuditEvent.objects.get(action=Action.PROLIFIC_BONUS)
    assert old.detail["submission_hash"] == submission_hash(session)


def test_delete_command_asks_for_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    study = study_with_match_sets()
    p = entered(study, pid="PIDASK0013")
    monkeypatch.setattr(sys, "stdin", io.StringIO("no\n"))
    out = io.StringIO()
    with pytest.raises(CommandError, match="Not confirmed: nothing deleted"):
        call_command(
            "delete_participant",
            study.slug,
            "--pseudonym",
            p.pseudonym,
            "--reason",
            "asked",
            stdout=out,
        )
    assert "will be deleted" in out.getvalue()
    assert Participant.objects.filter(pk=p.pk).exists()

    monkeypatch.setattr(sys, "stdin", io.StringIO("delete\n"))
    call_command(
        "delete_participant",
        study.slug,
        "--pseudonym",
        p.pseudonym,
        "--reason",
        "asked",
        stdout=out,
    )
    assert not Participant.objects.filter(pk=p.pk).exists()
    assert f"Deleted participant {p.pseudonym}" in out.getvalue()


def test_delete_command_reads_the_pid_from_stdin_and_audits_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = study_with_match_sets()
    p = finished(study, "PIDSTDIN14")
    pid = prolific_id("PIDSTDIN14")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{pid}\n"))
    out = io.StringIO()

    call_command(
        "delete_participant",
        study.slug,
        "--pid",
        "-",
        "--reason",
        "GDPR request",
        "--yes",
        stdout=out,
    )

    assert not Participant.objects.filter(pk=p.pk).exists()
    event = AuditEvent.objects.get()
    assert event.actor == "command:delete_participant"
    assert event.subject == pseudonymise(pid)
    assert pid not in json.dumps(
        {"actor": event.actor, "subject": event.subject, "detail": event.detail}
    )
    assert pid not in out.getvalue()
    with pytest.raises(CommandError, match="No participant with that Prolific ID"):
        call_command("delete_participant", study.slug, "--pid", pid, "--reason", "again", "--yes")
