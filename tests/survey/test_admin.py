import csv
import io

import pytest
from django.urls import reverse

from survey import services
from survey.exports import LONG_COLUMNS
from survey.models import (
    Assignment,
    AssignmentSlot,
    MatchSet,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
    Study,
)
from tests.factories import StudyFactory, prolific_id, study_with_match_sets
from tests.survey.helpers import answer_current, at_questions, entered

pytestmark = pytest.mark.django_db

PARTICIPANT_MODELS = [Participant, Assignment, AssignmentSlot, Response, PageVisit, RefusedRequest]


def _csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def study() -> Study:
    """An open study with one participant in each of four states, and a refused answer."""
    study = study_with_match_sets(
        per_method=2, slug="pilot", questions_per_method=1, max_participants=10
    )
    active = at_questions(study, pid="PIDACTIVE1")
    answer_current(active)
    answer_current(active)
    services.participant_consent(participant=entered(study, pid="PIDNOCONS1"), consent=False)
    failed = at_questions(study, pid="PIDFAILED1")
    while failed.status == Participant.Status.ACTIVE:
        failed = answer_current(failed, follow_checks=False).participant
    done = at_questions(study, pid="PIDDONE001")
    while done.step == Participant.Step.QUESTIONS:
        done = answer_current(done).participant
    services.participant_finish(participant=done)
    other = Assignment.objects.filter(participant=done).first()
    with pytest.raises(services.FlowError):
        services.response_record(
            participant=active,
            question=other,
            selected_photos=[1],
            none_selected=False,
            confidence=3,
        )
    return study


def _changelist(model: type) -> str:
    return reverse(f"admin:survey_{model._meta.model_name}_changelist")


def _change(obj: object) -> str:
    return reverse(f"admin:survey_{obj._meta.model_name}_change", args=[obj.pk])


def test_study_changelist_shows_counts_by_status_progress_and_csv_link(admin_client, study):
    page = admin_client.get(_changelist(Study))
    assert page.status_code == 200
    row = page.context["cl"].result_list.get(pk=study.pk)
    assert row.n_active == 1
    assert row.n_completed == 1
    assert row.n_failed_attention == 1
    assert row.n_no_consent == 1
    assert row.n_returned == 0
    assert row.n_match_sets == 8
    assert row.n_responses == Response.objects.filter(participant__study=study).count()
    html = page.content.decode()
    assert "1 / 10 (10%)" in html
    assert 'href="/api/v1/studies/pilot/responses.csv"' in html
    assert "Download responses (CSV)" in html


def test_study_change_form_has_live_counts_by_status(admin_client, study):
    page = admin_client.get(_change(study))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<tr><th>Completed</th><td>1</td></tr>" in html
    assert "<tr><th>Failed attention checks</th><td>1</td></tr>" in html
    assert "<tr><th>Declined consent</th><td>1</td></tr>" in html
    assert "<tr><th>All participants</th><td>4</td></tr>" in html
    assert "<tr><th>Match sets: NBNet</th><td>2</td></tr>" in html
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in html


@pytest.mark.parametrize("model", [Study, MatchSet, *PARTICIPANT_MODELS])
def test_every_changelist_and_change_page_renders_for_a_superuser(admin_client, study, model):
    listing = admin_client.get(_changelist(model))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count > 0
    obj = model.objects.first()
    detail = admin_client.get(_change(obj))
    assert detail.status_code == 200


def test_participant_lists_show_pseudonyms_never_prolific_ids(admin_client, study):
    for model in PARTICIPANT_MODELS:
        html = admin_client.get(_changelist(model)).content.decode()
        assert prolific_id("PIDACTIVE1") not in html
        assert prolific_id("PIDDONE001") not in html
    html = admin_client.get(_changelist(Participant)).content.decode()
    for p in Participant.objects.all():
        assert p.pseudonym in html


def test_participant_can_be_found_by_pseudonym_or_by_prolific_id(admin_client, study):
    done = Participant.objects.get(prolific_pid=prolific_id("PIDDONE001"))
    by_id = admin_client.get(_changelist(Participant), {"q": prolific_id("PIDDONE001")})
    assert list(by_id.context["cl"].result_list) == [done]
    by_pseudonym = admin_client.get(_changelist(Participant), {"q": done.pseudonym[:8]})
    assert list(by_pseudonym.context["cl"].result_list) == [done]


@pytest.mark.parametrize("model", PARTICIPANT_MODELS)
def test_participant_data_is_read_only(admin_client, study, model):
    obj = model.objects.first()
    name = model._meta.model_name
    assert admin_client.get(reverse(f"admin:survey_{name}_add")).status_code == 403
    delete_url = reverse(f"admin:survey_{name}_delete", args=[obj.pk])
    assert admin_client.get(delete_url).status_code == 403
    before = list(model.objects.values())
    posted = admin_client.post(_change(obj), {"status": "completed", "confidence": 1})
    assert posted.status_code == 403
    assert list(model.objects.values()) == before
    change_page = admin_client.get(_change(obj)).content.decode()
    assert 'name="_save"' not in change_page
    assert model.objects.filter(pk=obj.pk).exists()


def test_match_set_page_previews_query_and_candidates_and_provenance(admin_client, study):
    match_set = MatchSet.objects.filter(study=study).first()
    match_set.provenance = {"recognizer": "dlib-resnet", "seed": 7}
    match_set.save()
    html = admin_client.get(_change(match_set)).content.decode()
    assert f'src="{match_set.query_image.url}"' in html
    for candidate in match_set.candidates.all():
        assert f'src="{candidate.image.url}"' in html
        assert f'alt="candidate {candidate.rank}"' in html
    assert "&quot;recognizer&quot;: &quot;dlib-resnet&quot;" in html
    assert admin_client.get(reverse("admin:survey_matchset_add")).status_code == 403


def test_match_set_list_filters_by_study_and_method(admin_client, study):
    other = study_with_match_sets(per_method=1)
    page = admin_client.get(
        _changelist(MatchSet), {"study__id__exact": other.pk, "method": "nbnet"}
    )
    assert [ms.study_id for ms in page.context["cl"].result_list] == [other.pk]
    assert page.context["cl"].result_count == 1


def _action(admin_client, action: str, *studies: Study):
    return admin_client.post(
        _changelist(Study),
        {"action": action, "_selected_action": [s.pk for s in studies]},
        follow=True,
    )


def test_open_and_close_actions_change_status_through_the_service(admin_client):
    study = study_with_match_sets(per_method=5, status=Study.Status.DRAFT)
    _action(admin_client, "open_studies", study)
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert study.opened_at is not None
    _action(admin_client, "close_studies", study)
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    assert study.closed_at is not None


def test_opening_a_study_without_match_sets_is_refused_with_a_message(admin_client):
    empty = StudyFactory(status=Study.Status.DRAFT)
    page = _action(admin_client, "open_studies", empty)
    empty.refresh_from_db()
    assert empty.status == Study.Status.DRAFT
    assert "needs match sets before it can open" in page.content.decode()


def test_opening_a_study_with_too_few_match_sets_per_method_is_refused(admin_client):
    short = study_with_match_sets(per_method=4, status=Study.Status.DRAFT)
    page = _action(admin_client, "open_studies", short)
    short.refresh_from_db()
    assert short.status == Study.Status.DRAFT
    assert "needs at least 5 match sets" in page.content.decode()


def test_csv_export_link_needs_staff(client, django_user_model, study):
    url = reverse("api-responses-csv", kwargs={"slug": study.slug})
    assert client.get(url).status_code in (302, 403)
    user = django_user_model.objects.create_user("someone", password="pw-12345-long")
    client.force_login(user)
    assert client.get(url).status_code == 403


def test_csv_export_link_returns_long_rows_for_staff(admin_client, study):
    response = admin_client.get(reverse("api-responses-csv", kwargs={"slug": study.slug}))
    assert response.status_code == 200
    rows = _csv_rows(response)
    assert len(rows) == Response.objects.filter(participant__study=study).count()
    assert list(rows[0]) == LONG_COLUMNS
    pseudonyms = set(Participant.objects.values_list("pseudonym", flat=True))
    assert {row["participant"] for row in rows} <= pseudonyms


def test_download_action_exports_the_selected_studies_in_one_csv(admin_client, study):
    other = study_with_match_sets(per_method=1, slug="second", questions_per_method=1)
    p = at_questions(other, pid="PIDSECOND1")
    answer_current(p)
    response = admin_client.post(
        _changelist(Study),
        {"action": "download_responses_csv", "_selected_action": [study.pk, other.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = _csv_rows(response)
    assert len(rows) == Response.objects.count()
    assert {row["study"] for row in rows} == {"pilot", "second"}


def test_assignment_slots_show_who_holds_each_and_which_are_free(admin_client, study):
    held = AssignmentSlot.objects.filter(study=study, participant__isnull=False)
    free = AssignmentSlot.objects.filter(study=study, participant__isnull=True)
    # Three participants reached the questions; the one who failed the attention checks no
    # longer counts for balance, so the next to arrive took that slot over.
    holders = {slot.participant.prolific_pid for slot in held.select_related("participant")}
    assert holders == {prolific_id("PIDACTIVE1"), prolific_id("PIDDONE001")}
    assert free.exists()
    html = admin_client.get(_changelist(AssignmentSlot)).content.decode()
    for slot in held.select_related("participant"):
        assert slot.participant.pseudonym in html
    listing = admin_client.get(_changelist(AssignmentSlot), {"participant__isempty": "1"})
    assert set(listing.context["cl"].result_list) == set(free)
    assert listing.context["cl"].result_count == free.count()
