"""The staff-only study report pages mounted under the AnalysisRun admin."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from analysis.models import REPORT_FILES, AnalysisRun
from analysis.services import responses_simulate, study_analyze
from survey.models import AuditEvent, Study
from tests.factories import study_with_match_sets

pytestmark = pytest.mark.django_db

QUICK = {"n_resamples": 99, "sensitivity": False, "variability": False}


@pytest.fixture
def study() -> Study:
    """A demo study with a few simulated participants and a quick plan."""
    study = study_with_match_sets(
        is_demo=True, slug="demo-report", analysis_plan={"n_resamples": 99, "sensitivity": False}
    )
    responses_simulate(study=study, participants=6, seed=5)
    return study


def report_url(study: Study) -> str:
    return reverse("admin:analysis_study_report", args=[study.slug])


def test_report_page_needs_a_staff_login(client: Client, study: Study, django_user_model) -> None:
    url = report_url(study)
    response = client.get(url)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    assert client.post(url).status_code == 302
    client.force_login(django_user_model.objects.create_user("visitor", password="x"))
    assert client.get(url).status_code == 302  # logged in but not staff
    assert not AnalysisRun.objects.exists()


def test_staff_without_permission_is_forbidden(client: Client, study: Study, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(report_url(study)).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_analysisrun"))
    response = client.get(report_url(study))
    assert response.status_code == 200
    assert b"Run analysis now" not in response.content  # viewing is not running
    assert client.post(report_url(study)).status_code == 403


def test_superuser_sees_the_latest_report_inline(admin_client: Client, study: Study, tmp_path):
    study_analyze(study=study, out_dir=tmp_path / "old", overrides=QUICK)
    latest = study_analyze(study=study, out_dir=tmp_path / "new", overrides=QUICK)
    response = admin_client.get(report_url(study))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Run analysis now" in html
    assert "csrfmiddlewaretoken" in html
    frame_src = reverse("admin:analysis_run_file", args=[latest.pk, "report.html"])
    assert f'<iframe class="report-frame" title="Analysis report" src="{frame_src}"' in html
    assert "Earlier runs" in html
    assert "not pre-registered" in html

    report = admin_client.get(frame_src)
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/html")
    assert report["X-Frame-Options"] == "SAMEORIGIN"
    assert "default-src 'none'" in report["Content-Security-Policy"]
    body = b"".join(report.streaming_content)
    assert body.count(b"<svg") == 4  # figures inline
    assert b"NOT PRE-REGISTERED" in body

    summary = admin_client.get(reverse("admin:analysis_run_file", args=[latest.pk, "summary.json"]))
    assert "attachment" in summary["Content-Disposition"]
    missing = reverse("admin:analysis_run_file", args=[latest.pk, "settings.py"])
    assert admin_client.get(missing).status_code == 404
    # Each file served is an audited export (the refused name is not).
    events = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT).order_by("pk")
    assert [(e.actor, e.study, e.detail) for e in events] == [
        ("admin", study, {"via": "admin report file", "format": name, "analysis_run": latest.pk})
        for name in ("report.html", "summary.json")
    ]


def test_run_analysis_now_button_records_a_run(
    admin_client: Client, study: Study, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    response = admin_client.post(report_url(study))
    assert response.status_code == 302
    assert response["Location"] == report_url(study)
    run = AnalysisRun.objects.get()
    assert run.created_by.is_superuser
    assert run.folder.parent == tmp_path / "reports"
    page = admin_client.get(report_url(study))
    assert "Analysis done in" in page.content.decode()


def test_run_analysis_now_needs_the_csrf_token(study: Study, django_user_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_superuser("boss", password="x"))
    assert client.post(report_url(study)).status_code == 403
    assert not AnalysisRun.objects.exists()


def test_run_analysis_now_reports_a_study_without_responses(admin_client: Client) -> None:
    empty = study_with_match_sets(slug="empty")
    page = admin_client.post(report_url(empty), follow=True)
    assert "has no responses yet" in page.content.decode()
    assert not AnalysisRun.objects.exists()


def test_changelist_and_index_link_to_the_report_pages(admin_client: Client, study, tmp_path):
    run = study_analyze(study=study, out_dir=tmp_path, overrides={**QUICK, "figures": False})
    changelist = admin_client.get(reverse("admin:analysis_analysisrun_changelist"))
    html = changelist.content.decode()
    assert changelist.status_code == 200
    assert report_url(study) in html
    assert reverse("admin:analysis_study_reports") in html
    assert run.plan_sha256[:12] in html
    detail = admin_client.get(reverse("admin:analysis_analysisrun_change", args=[run.pk]))
    assert detail.status_code == 200
    assert "summary.json" in detail.content.decode()
    index = admin_client.get(reverse("admin:analysis_study_reports"))
    assert report_url(study) in index.content.decode()


def staff_with(django_user_model, *codenames: str):
    """A staff user with the view permissions of studies and runs, plus these codenames."""
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    names = ["view_study", "view_analysisrun", *codenames]
    user.user_permissions.add(*Permission.objects.filter(codename__in=names))
    return user


def test_view_only_staff_see_the_report_page_but_download_no_report_file(
    client: Client, study: Study, django_user_model, tmp_path
) -> None:
    run = study_analyze(study=study, out_dir=tmp_path, overrides=QUICK)
    client.force_login(staff_with(django_user_model))
    page = client.get(report_url(study))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<iframe" not in html
    assert reverse("admin:analysis_run_file", args=[run.pk, "responses_long.csv"]) not in html
    assert "needs the permission to export" in html
    present = [name for name in REPORT_FILES if run.report_file(name)]
    assert "responses_long.csv" in present
    for name in present:
        url = reverse("admin:analysis_run_file", args=[run.pk, name])
        assert client.get(url).status_code == 403, name
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT).exists()


def test_staff_with_the_export_permission_download_every_report_file(
    client: Client, study: Study, django_user_model, tmp_path
) -> None:
    run = study_analyze(study=study, out_dir=tmp_path, overrides=QUICK)
    client.force_login(staff_with(django_user_model, "export_responses"))
    frame = reverse("admin:analysis_run_file", args=[run.pk, "report.html"])
    assert f'src="{frame}"' in client.get(report_url(study)).content.decode()
    present = [name for name in REPORT_FILES if run.report_file(name)]
    for name in present:
        response = client.get(reverse("admin:analysis_run_file", args=[run.pk, name]))
        assert response.status_code == 200, name
        b"".join(response.streaming_content)
    exports = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT)
    assert sorted(e.detail["format"] for e in exports) == sorted(present)
