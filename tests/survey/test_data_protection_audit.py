"""Data protection: the audit log of exports and analyses, read-only in the admin
(survey.dataprotection.audit)."""

import io

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from survey.models import AuditEvent
from tests.factories import study_with_match_sets
from tests.survey.data_protection_helpers import finished

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


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
