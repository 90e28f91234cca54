"""Data protection: purging Prolific IDs, erasing a person, the audit log, safe error reports."""

import io
import json
import logging
import sys
from collections import Counter
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from survey import services
from survey.dataprotection import (
    DataProtectionError,
    participant_delete,
    participant_ids_purge,
    submission_hash,
)
from survey.exports import csv_text
from survey.models import (
    Assignment,
    AuditEvent,
    PageVisit,
    Participant,
    ProlificBonus,
    RefusedRequest,
    Response,
    Study,
    pseudonymise,
)
from survey.redaction import MASK
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets
from tests.survey.helpers import answer_current, at_questions, entered

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def finished(study: Study, pid: str) -> Participant:
    """A participant who answered every question and completed the study."""
    p = at_questions(study, pid=pid)
    while p.step == Participant.Step.QUESTIONS:
        p = answer_current(p).participant
    return services.participant_finish(participant=p)


def declined(study: Study, pid: str) -> Participant:
    return services.participant_consent(participant=entered(study, pid=pid), consent=False)


def pids(study: Study) -> dict[str, str]:
    return dict(Participant.objects.filter(study=study).values_list("pseudonym", "prolific_pid"))


# --- purge_participant_ids ---------------------------------------------------------------


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


# --- delete_participant ------------------------------------------------------------------


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


# --- the audit log: exports, analyses, admin -----------------------------------------------


@pytest.fixture
def staff_client(django_user_model) -> Client:
    client = Client()
    client.force_login(
        django_user_model.objects.create_superuser("staff-bob", "bob@example.org", "pw")
    )
    return client


def test_api_exports_are_audited_with_the_staff_username(staff_client: Client) -> None:
    study = study_with_match_sets()
    finished(study, "PIDEXP0015")
    json_url = reverse("api-responses", kwargs={"slug": study.slug})
    csv_url = reverse("api-responses-csv", kwargs={"slug": study.slug})

    assert staff_client.get(json_url).status_code == 200
    csv_response = staff_client.get(csv_url)
    assert csv_response.status_code == 200
    b"".join(csv_response.streaming_content)

    events = AuditEvent.objects.filter(action=Action.EXPORT).order_by("pk")
    assert [(e.actor, e.study, e.detail) for e in events] == [
        ("staff-bob", study, {"via": "api", "format": "json"}),
        ("staff-bob", study, {"via": "api", "format": "csv"}),
    ]
    # Refused exports are not exports.
    assert Client().get(csv_url).status_code == 403
    assert AuditEvent.objects.count() == 2


def test_admin_csv_export_is_audited_per_study(staff_client: Client) -> None:
    first, second = study_with_match_sets(), study_with_match_sets()
    response = staff_client.post(
        reverse("admin:survey_study_changelist"),
        {"action": "download_responses_csv", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    events = AuditEvent.objects.filter(action=Action.EXPORT)
    assert {(e.actor, e.study_id, e.detail["via"]) for e in events} == {
        ("staff-bob", first.pk, "admin"),
        ("staff-bob", second.pk, "admin"),
    }


def test_analysis_runs_are_audited(tmp_path, settings, staff_client: Client) -> None:
    from analysis.services import responses_simulate, study_analyze

    settings.VAR_DIR = tmp_path  # the admin's button writes under VAR_DIR/reports
    plan = {"n_resamples": 99, "sensitivity": False, "variability": False, "figures": False}
    study = study_with_match_sets(is_demo=True, analysis_plan=plan)
    responses_simulate(study=study, participants=4, seed=3)
    quick = {"n_resamples": 99, "sensitivity": False, "variability": False, "figures": False}

    run = study_analyze(study=study, out_dir=tmp_path / "a", overrides=quick, actor="tester")
    call_command(
        "analyze_study",
        study.slug,
        "--out",
        str(tmp_path / "b"),
        "--resamples",
        "99",
        "--no-sensitivity",
        stdout=io.StringIO(),
    )

    report_page = reverse("admin:analysis_study_report", args=[study.slug])
    assert staff_client.post(report_page).status_code == 302

    events = list(AuditEvent.objects.filter(action=Action.ANALYSIS).order_by("pk"))
    assert [e.actor for e in events] == ["tester", "command:analyze_study", "staff-bob"]
    assert events[0].study == study
    assert events[0].detail["run"] == run.pk


def test_audit_log_is_read_only_in_the_admin(staff_client: Client) -> None:
    event = AuditEvent.objects.create(actor="x", action=Action.EXPORT, detail={"via": "api"})
    assert staff_client.get(reverse("admin:survey_auditevent_changelist")).status_code == 200
    change = staff_client.get(reverse("admin:survey_auditevent_change", args=[event.pk]))
    assert change.status_code == 200
    assert b'name="actor"' not in change.content  # shown, not editable
    assert staff_client.get(reverse("admin:survey_auditevent_add")).status_code == 403
    delete = reverse("admin:survey_auditevent_delete", args=[event.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


# --- Prolific IDs out of URLs, logs and error reports ---------------------------------------

PID = prolific_id("PIDSECRET77")
SESSION = prolific_id("SESSSECRET77")
ENTRY_QUERY = {"PROLIFIC_PID": PID, "STUDY_ID": STUDY_ID, "SESSION_ID": SESSION}


def test_entry_redirects_away_from_the_prolific_ids_in_the_url() -> None:
    study = study_with_match_sets()
    client = Client()
    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)
    assert response.status_code == 302
    assert response["Location"] == reverse("survey:consent", kwargs={"slug": study.slug})
    assert response["Referrer-Policy"] == "same-origin"
    # Every page after that has a URL without the IDs.
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert PID not in page.request["PATH_INFO"] + page.request.get("QUERY_STRING", "")
    assert PID.encode() not in page.content


@pytest.fixture
def failing_entry(monkeypatch: pytest.MonkeyPatch):
    """Make admission fail the way an unexpected database error would: quoting the ID."""

    def explode(**kwargs: object) -> None:
        raise RuntimeError(f"Failing row contains ({kwargs['prolific_pid']}, ...)")

    monkeypatch.setattr(services, "participant_enter", explode)


def test_error_mail_to_admins_never_contains_the_prolific_ids(settings, failing_entry) -> None:
    settings.ADMINS = [("Ops", "ops@example.org")]
    study = study_with_match_sets()
    client = Client(raise_request_exception=False)

    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)

    assert response.status_code == 500
    assert len(mail.outbox) == 1
    report = mail.outbox[0]
    text = report.subject + report.body
    assert "RuntimeError" in text
    assert "Failing row contains" in text
    for secret in (PID, SESSION):
        assert secret not in text
    assert f"PROLIFIC_PID={MASK}" in text


def test_debug_error_page_never_contains_the_prolific_ids(settings, failing_entry) -> None:
    settings.DEBUG = True
    study = study_with_match_sets()
    client = Client(raise_request_exception=False)

    response = client.get(reverse("survey:entry", kwargs={"slug": study.slug}), ENTRY_QUERY)

    assert response.status_code == 500
    page = response.content.decode()
    assert "RuntimeError" in page
    assert "Failing row contains" in page
    for secret in (PID, SESSION):
        assert secret not in page


def test_development_server_log_masks_the_prolific_ids() -> None:
    logger = logging.getLogger("django.server")
    handler = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logger.info(
            '"%s" %s %s',
            f"GET /s/x/?PROLIFIC_PID={PID}&STUDY_ID=S1&SESSION_ID=S2 HTTP/1.1",
            "302",
            "0",
        )
    finally:
        handler.setStream(previous)
    line = stream.getvalue()
    assert "GET /s/x/?PROLIFIC_PID=" in line
    assert PID not in line
    assert f"SESSION_ID={MASK}" in line
