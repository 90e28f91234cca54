"""A study built by build_study from real reconstructions, seen by a participant and an admin."""

import io
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from survey import services
from survey.models import MatchSet, Study
from tests.reconstruction.helpers import tiny_reconstructed_dataset
from tests.survey.browser_helpers import arrive, fast_forward_to_questions, images_loaded

pytestmark = [pytest.mark.browser, pytest.mark.facedata, pytest.mark.slow]


def test_built_match_set_shows_in_the_survey_and_its_provenance_in_the_admin(
    page, face_data: Path, tmp_path: Path
):
    reconstructions = tiny_reconstructed_dataset(face_data, tmp_path)
    call_command(
        "build_study",
        "--slug", "built", "--title", "Built from reconstructions",
        "--dataset", "tiny", "--recognizer", "mobileface", "--second", "mobileface",
        "--methods", "eigenfaces", "--per-method", "3", "--seed", "3", "--no-progress",
        stdout=io.StringIO(),
    )  # fmt: skip
    study = services.study_set_status(study=Study.objects.get(slug="built"), status="open")

    participant = arrive(page, study, pid="PIDBUILT001")
    fast_forward_to_questions(page, study, participant)
    participant.refresh_from_db()
    assignment = participant.assignments.select_related("match_set").get(position=1)
    query = page.locator("figure.query img")
    assert query.get_attribute("src") == assignment.match_set.query_image.url
    assert page.get_by_role("checkbox", name="None of these show the same person").count() == 1
    for number in range(1, 6):
        assert page.get_by_role("checkbox", name=f"Photo {number}", exact=True).count() == 1
    widths = images_loaded(page)
    assert len(widths) == 6
    assert all(width > 0 for width in widths), widths  # the reconstruction and 5 candidates

    match_set = assignment.match_set
    source = match_set.provenance["reconstruction"]["id"]
    assert source in {r.pk for r in reconstructions}
    admin = get_user_model().objects.create_superuser("admin", password="pw-for-the-test-1")
    client = Client()
    client.force_login(admin)
    change = client.get(reverse("admin:survey_matchset_change", args=[match_set.pk]))
    assert change.status_code == 200
    html = change.content.decode()
    provenance = match_set.provenance
    for shown in ("mobileface", "eigenfaces", provenance["F"]["weights_sha256"]):
        assert shown in html
    assert f"{provenance['final_cosine']}"[:6] in html
    assert MatchSet.objects.filter(study=study).count() == 3
