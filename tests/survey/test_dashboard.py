"""The live study dashboard: figures on known data, and staff-only pages."""

import json
import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from statsmodels.stats.proportion import proportion_confint

from survey import services
from survey.dashboard import study_dashboard, wilson_interval
from survey.models import Assignment, Participant, Response
from tests.factories import study_with_match_sets
from tests.survey.helpers import answer_current, at_questions, current

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def finish_all(p: Participant, *, pick_true: bool) -> Participant:
    """Answer every question: the true candidate (or a wrong one), checks as instructed."""
    while p.step == Participant.Step.QUESTIONS:
        a = current(p)
        if a.is_attention_check:
            p = answer_current(p).participant
            continue
        ranks = {c.rank: c.is_true for c in a.match_set.candidates.all()}
        wanted = [r for r, true in ranks.items() if true == pick_true] or [1]
        p = answer_current(p, selected_ranks=[wanted[0]]).participant
    return p


@pytest.fixture
def study():
    return study_with_match_sets(per_method=5, speeder_seconds=2.0)


def test_wilson_interval_equals_statsmodels():
    for k, n in [(0, 10), (3, 10), (10, 10), (57, 180)]:
        low, high = wilson_interval(k, n)
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (low, high) == pytest.approx(ref, abs=1e-9)


def test_figures_on_known_data(study):
    rng = random.Random(0)
    right = at_questions(study, pid="PIDRIGHT01", rng=rng)
    right = finish_all(right, pick_true=True)
    wrong = at_questions(study, pid="PIDWRONG01", rng=rng)
    wrong = finish_all(wrong, pick_true=False)
    failing = at_questions(study, pid="PIDFAIL001", rng=rng)
    while failing.status == Participant.Status.ACTIVE:
        failing = answer_current(failing, follow_checks=False).participant
    Participant.objects.create(
        study=study, prolific_pid="PIDNEW0001", pseudonym="new", session_id="SNEW000001"
    )
    # Known timings: every answer of `right` took 1 s (a speeder), of the others 5 or 10 s.
    for p, seconds in ((right, 1), (wrong, 10), (failing, 5)):
        for r in Response.objects.filter(participant=p):
            Response.objects.filter(pk=r.pk).update(
                served_at=r.answered_at - timedelta(seconds=seconds), is_fast=seconds < 2
            )
    figures = study_dashboard(study=study)

    counts = {c["status"]: c["n"] for c in figures["counts"]}
    assert counts == {
        "active": 3,  # right and wrong are at the debrief, one has just arrived
        "completed": 0,
        "no_consent": 0,
        "failed_attention": 1,
        "returned": 0,
        "timed_out": 0,
    }
    assert figures["participants"] == 4
    services.participant_finish(participant=right)
    services.participant_finish(participant=wrong)
    figures = study_dashboard(study=study)
    counts = {c["status"]: c["n"] for c in figures["counts"]}
    assert counts["completed"] == 2
    assert counts["active"] == 1

    n_real = study.questions_per_method * len(study.methods)
    durations = [
        r.duration_seconds
        for r in Response.objects.filter(
            participant__study=study, assignment__is_attention_check=False
        )
    ]
    assert figures["median_seconds_per_question"] == pytest.approx(
        statistics.median(durations), abs=0.01
    )
    real_right_wrong = Response.objects.filter(
        participant__in=[right, wrong], assignment__is_attention_check=False
    ).count()
    assert real_right_wrong == 2 * n_real
    assert figures["speeders"]["fast_answers"] == n_real  # all of right's real answers
    assert figures["speeders"]["participants_with_fast_answers"] == 1
    assert figures["speeders"]["threshold_seconds"] == 2.0

    checks = Response.objects.filter(participant__study=study, assignment__is_attention_check=True)
    failed = checks.filter(attention_passed=False).count()
    assert failed == 2  # the failing participant's two checks
    assert figures["attention"]["checks_failed"] == 2
    assert figures["attention"]["failure_rate"] == pytest.approx(2 / checks.count())
    assert figures["attention"]["participants_failed"] == 1
    assert figures["attention"]["participant_failure_rate"] == pytest.approx(1 / 3)

    # Accuracy: right is always correct, wrong never; the failed participant is left out.
    for row in figures["accuracy"]:
        present = Response.objects.filter(
            participant__in=[right, wrong],
            assignment__is_attention_check=False,
            assignment__match_set__method=row["method"],
            assignment__match_set__candidates__is_true=True,
        ).distinct()
        k = present.filter(participant=right).count()
        assert row["n"] == present.count()
        assert row["correct"] == k
        assert row["accuracy"] == pytest.approx(0.5)
        assert (row["low"], row["high"]) == pytest.approx(wilson_interval(k, present.count()))

    bars = figures["timeline"]["bars"]
    assert sum(b["arrivals"] for b in bars) == 4
    assert sum(b["completions"] for b in bars) == 2


def test_timeline_buckets_fit_the_span(study):
    for i in range(3):
        Participant.objects.create(
            study=study,
            prolific_pid=f"PIDTIME{i:03d}",
            pseudonym=f"t{i}",
            session_id=f"STIME{i:05d}",
        )
    Participant.objects.filter(pseudonym="t0").update(entered_at=T0)
    Participant.objects.filter(pseudonym="t1").update(entered_at=T0 + timedelta(minutes=30))
    Participant.objects.filter(pseudonym="t2").update(entered_at=T0 + timedelta(minutes=125))
    study.status = study.Status.CLOSED
    study.closed_at = T0 + timedelta(minutes=130)
    study.save()
    timeline = study_dashboard(study=study, now=T0 + timedelta(minutes=130))["timeline"]
    assert timeline["bucket_minutes"] == 5  # 130 min / 5 = 26 bars ≤ 48
    starts = [b["start"] for b in timeline["bars"] if b["arrivals"]]
    assert starts == [
        "2026-11-26T10:00:00+00:00",
        "2026-11-26T10:30:00+00:00",
        "2026-11-26T12:05:00+00:00",
    ]


def test_an_empty_study_has_empty_figures(study):
    figures = study_dashboard(study=study)
    assert figures["participants"] == 0
    assert figures["timeline"]["bars"] == []
    assert figures["median_seconds_per_question"] is None
    assert all(row["n"] == 0 and row["accuracy"] is None for row in figures["accuracy"])


def test_dashboard_pages_are_staff_only_and_never_cached(client, study):
    page = reverse("admin:survey_study_dashboard", args=[study.pk])
    data = reverse("admin:survey_study_dashboard_data", args=[study.pk])
    for url in (page, data):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    user = get_user_model().objects.create_user("plain", password="x", is_staff=False)
    client.force_login(user)
    assert client.get(data).status_code == 302  # not staff: back to the login page

    admin = get_user_model().objects.create_superuser("boss", password="x")
    client.force_login(admin)
    at_questions(study, pid="PIDDASH001")
    response = client.get(data)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = json.loads(response.content)
    assert body["participants"] == 1
    assert "PIDDASH001" not in response.content.decode()
    html = client.get(page)
    assert html.status_code == 200
    assert "no-store" in html["Cache-Control"]
    assert b'id="completed-count"' in html.content
    assert data.encode() in html.content
    change = client.get(reverse("admin:survey_study_change", args=[study.pk]))
    assert page.encode() in change.content  # linked from the study's page


def test_staff_without_view_permission_is_refused(client, study):
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    url = reverse("admin:survey_study_dashboard_data", args=[study.pk])
    assert client.get(url).status_code == 403
    assert Assignment.objects.count() == 0


@pytest.mark.parametrize("object_id", ["..%2F..%2Fetc%2Fpasswd", "1%00", "not-a-number"])
def test_a_malformed_study_id_is_a_404_not_a_server_error(admin_client, object_id):
    for suffix in ("dashboard/", "dashboard.json"):
        response = admin_client.get(f"/admin/survey/study/{object_id}/{suffix}")
        assert response.status_code == 404, (object_id, suffix)
