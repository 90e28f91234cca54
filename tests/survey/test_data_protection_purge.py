"""Data protection: purging raw Prolific IDs (survey.dataprotection.purge)."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from survey import services
from survey.dataprotection import DataProtectionError, participant_ids_purge, submission_hash
from survey.exports import csv_text
from survey.models import AuditEvent, Participant, ProlificBonus, Study
from tests.factories import prolific_id, study_with_match_sets
from tests.survey.data_protection_helpers import (
    finished,
    old_style_prolific_audit,
    survey_rows_mentioning,
)
from tests.survey.helpers import at_questions, entered

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def declined(study: Study, pid: str) -> Participant:
    return services.participant_consent(participant=entered(study, pid=pid), consent=False)


def pids(study: Study) -> dict[str, str]:
    return dict(Participant.objects.filter(study=study).values_list("pseudonym", "prolific_pid"))


def test_purge_blanks_raw_ids_of_finished_participants_and_keeps_pseudonyms() -> None:
    study = study_with_match_sets()
    done, no = finished(study, "PIDDONE001"), declined(study, "PIDDECL001")
    Participant.objects.filter(pk=done.pk).update(user_agent="Mozilla/5.0 (X11; Linux x86_64)")
    export_before = csv_text(study)

    result = participant_ids_purge(study=study, actor="tester")

    assert result.purged == {study.slug: 2}
    assert pids(study) == {done.pseudonym: "", no.pseudonym: ""}
    # The submission ID and the user agent go with it.
    assert set(study.participants.values_list("session_id", "user_agent")) == {("", "")}
    # Exports only ever used the pseudonym: they are unchanged.
    assert csv_text(study) == export_before
    event = AuditEvent.objects.get(action=Action.PURGE_IDS)
    assert (event.actor, event.study, event.subject) == ("tester", study, "")
    assert event.detail["participants"] == 2
    # The same person coming back still resumes their participation through the pseudonym.
    assert entered(study, pid="PIDDONE001").pk == done.pk


def test_purge_refuses_while_someone_is_taking_part_and_changes_nothing() -> None:
    study = study_with_match_sets()
    finished(study, "PIDDONE002")
    busy = at_questions(study, pid="PIDBUSY002")

    with pytest.raises(DataProtectionError) as refused:
        participant_ids_purge(study=study, actor="tester")

    assert "still taking part" in refused.value.message
    assert busy.pseudonym in refused.value.message
    assert "--force" in refused.value.message
    assert "" not in pids(study).values()
    assert not AuditEvent.objects.exists()

    result = participant_ids_purge(study=study, actor="tester", force=True)
    assert result.purged == {study.slug: 2}
    assert set(pids(study).values()) == {""}
    assert AuditEvent.objects.get().detail["in_progress_forced"] == 1


def test_purge_treats_active_participants_past_the_time_limit_as_timed_out() -> None:
    study = study_with_match_sets(maximum_minutes=40)
    gone = at_questions(study, pid="PIDGONE003")
    Participant.objects.filter(pk=gone.pk).update(entered_at=timezone.now() - timedelta(minutes=41))

    result = participant_ids_purge(study=study, actor="tester")

    assert result.purged == {study.slug: 1}
    assert result.timed_out == {study.slug: 1}
    assert pids(study) == {gone.pseudonym: ""}


def test_purge_waits_for_unpaid_bonuses() -> None:
    study = study_with_match_sets()
    p = finished(study, "PIDBONUS04")
    bonus = ProlificBonus.objects.create(
        study=study, submission_id=p.session_id, participant=p, amount_pence=50
    )

    with pytest.raises(DataProtectionError, match="bonus not yet paid"):
        participant_ids_purge(study=study, actor="tester")
    assert pids(study) == {p.pseudonym: prolific_id("PIDBONUS04")}

    ProlificBonus.objects.filter(pk=bonus.pk).update(state=ProlificBonus.State.PAID)
    assert participant_ids_purge(study=study, actor="tester").purged == {study.slug: 1}


def test_purge_older_than_selects_by_when_participants_finished() -> None:
    study = study_with_match_sets()
    old, recent = finished(study, "PIDOLD0005"), finished(study, "PIDNEW0005")
    Participant.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=31))

    result = participant_ids_purge(study=study, actor="tester", older_than=timedelta(days=30))

    assert result.purged == {study.slug: 1}
    assert pids(study) == {old.pseudonym: "", recent.pseudonym: prolific_id("PIDNEW0005")}
    assert AuditEvent.objects.get().detail["older_than_days"] == 30


def test_purge_command_expired_uses_the_retention_setting(settings) -> None:
    settings.FVR_RETENTION_DAYS = 10
    study = study_with_match_sets()
    old, recent = declined(study, "PIDOLD0006"), declined(study, "PIDNEW0006")
    Participant.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=11))
    out = io.StringIO()

    call_command("purge_participant_ids", study.slug, "--expired", stdout=out)

    assert f"{study.slug}: 1 Prolific ID(s) purged." in out.getvalue()
    assert pids(study) == {old.pseudonym: "", recent.pseudonym: prolific_id("PIDNEW0006")}
    assert AuditEvent.objects.get().actor == "command:purge_participant_ids"


def test_purge_command_dry_run_all_studies_changes_nothing() -> None:
    first, second = study_with_match_sets(), study_with_match_sets()
    declined(first, "PIDALL0007")
    declined(second, "PIDALL0007")
    out = io.StringIO()

    call_command("purge_participant_ids", "--all", "--dry-run", stdout=out)

    text = out.getvalue()
    assert f"{first.slug}: 1 Prolific ID(s) would be purged." in text
    assert f"{second.slug}: 1 Prolific ID(s) would be purged." in text
    assert "Dry run: nothing changed." in text
    assert Participant.objects.filter(prolific_pid=prolific_id("PIDALL0007")).count() == 2
    assert not AuditEvent.objects.exists()

    call_command("purge_participant_ids", "--all", stdout=out)
    assert not Participant.objects.exclude(prolific_pid="").exists()
    assert AuditEvent.objects.filter(action=Action.PURGE_IDS).count() == 2


def test_purge_command_errors_say_what_to_do() -> None:
    study = study_with_match_sets()
    at_questions(study, pid="PIDBUSY008")
    with pytest.raises(CommandError, match=r"SLUG.*--all"):
        call_command("purge_participant_ids")
    with pytest.raises(CommandError, match=r"No study with slug 'nope'\. Known studies:"):
        call_command("purge_participant_ids", "nope")
    with pytest.raises(CommandError, match="still taking part"):
        call_command("purge_participant_ids", study.slug)


def test_purge_leaves_submission_ids_nowhere_but_keeps_payment_records_by_hash() -> None:
    study = study_with_match_sets()
    p, other = finished(study, "PIDPAID016"), finished(study, "PIDKEEP016")
    session = p.session_id
    old_style_prolific_audit(p)
    bonus = ProlificBonus.objects.create(
        study=study,
        submission_id=session,
        participant=p,
        amount_pence=150,
        state=ProlificBonus.State.PAID,
        prolific_bonus_id="6500aa11bb22cc33dd44ee55",
        paid_at=timezone.now(),
        error=f"earlier: Submission {session} was busy",
    )

    participant_ids_purge(study=study, actor="tester")

    assert survey_rows_mentioning(session) == []
    bonus.refresh_from_db()
    assert bonus.submission_id == f"hash:{submission_hash(session)}"
    assert (bonus.state, bonus.amount_pence, bonus.participant) == ("paid", 150, p)
    event = AuditEvent.objects.get(action=Action.PROLIFIC_BONUS)
    assert event.detail["submission_hash"] == submission_hash(session)
    assert event.detail["answer"] == (
        f"Submission [submission {submission_hash(session)}] has not taken part in this study."
    )
    purge = AuditEvent.objects.get(action=Action.PURGE_IDS)
    assert purge.detail["bonus_submissions_hashed"] == 1
    assert purge.detail["audit_events_scrubbed"] == 1
    assert other.session_id not in json.dumps(list(AuditEvent.objects.values()), default=str)
