"""The live dashboard in Chromium updates by itself while simulated participants take the study."""

import threading

import pytest
from django.contrib.auth import get_user_model

from survey.bots import BOT_STUDY_ID, bots_run, observer_create
from survey.models import Participant
from tests.factories import study_with_match_sets

# PostgreSQL: the dashboard reads while bots write, which a shared in-memory SQLite refuses.
pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

N_BOTS = 4


def test_dashboard_counts_completions_without_a_reload(page, live_server):
    study = study_with_match_sets(per_method=5, is_demo=True)
    get_user_model().objects.create_superuser("boss", password="a-long-password-1")
    page.goto("/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.goto(f"/admin/survey/study/{study.pk}/dashboard/")
    assert page.inner_text("#completed-count").strip() == "0"
    page.evaluate("window.__notReloaded = true")

    run = {}

    def bots() -> None:
        # One at a time, so that the count climbs in steps the page can be seen taking.
        run["result"] = bots_run(
            base_url=live_server.url,
            slug=study.slug,
            n=N_BOTS,
            observer=observer_create(name="random"),
            careless=0.0,
            seed=1,
            concurrency=1,
            study_id=BOT_STUDY_ID,
            every_image=False,
        )

    worker = threading.Thread(target=bots)
    worker.start()
    try:
        # A value between 0 and N_BOTS seen on the page proves it updates while bots run.
        page.wait_for_function(
            "Number(document.getElementById('completed-count').textContent) >= 1", timeout=90_000
        )
        page.wait_for_function(
            f"Number(document.getElementById('completed-count').textContent) === {N_BOTS}",
            timeout=120_000,
        )
    finally:
        worker.join(timeout=180)
    assert run["result"].count("completed") == N_BOTS
    assert page.evaluate("window.__notReloaded") is True  # updated in place, never reloaded
    assert Participant.objects.filter(study=study, status="completed").count() == N_BOTS
    answers = page.inner_text('[data-count="completed"]').strip()
    assert answers == str(N_BOTS)
    accuracy_rows = page.locator("#accuracy tr")
    assert accuracy_rows.count() == len(study.methods)
    assert "/ 0" not in accuracy_rows.first.inner_text()  # answers counted per method
