"""Least privilege for staff: viewing studies is not exporting their data or operating Prolific.

A staff user with every view permission can read the admin but export nothing and send nothing
to Prolific; `survey.export_responses` and `survey.operate_prolific` each grant exactly that.
"""

import pytest
import requests
from django.contrib.auth.models import Permission
from django.urls import reverse

from survey.models import AuditEvent, Participant, Study, pseudonymise
from tests.factories import StudyFactory
from tests.survey.prolific_replay import (
    PID,
    STUDY_ID,
    SUBMISSION,
    ReplayAdapter,
)

pytestmark = pytest.mark.django_db

EXPORT = "survey.export_responses"
OPERATE = "survey.operate_prolific"
# Each Prolific action, the status it acts on, and the audit event of its operation.
PROLIFIC_ACTIONS = [
    ("prolific_approve", Participant.Status.COMPLETED, AuditEvent.Action.PROLIFIC_APPROVE),
    (
        "prolific_reject_failed_check",
        Participant.Status.FAILED_ATTENTION,
        AuditEvent.Action.PROLIFIC_REJECT,
    ),
    ("prolific_request_return", Participant.Status.NO_CONSENT, AuditEvent.Action.PROLIFIC_RETURN),
    ("prolific_verify", Participant.Status.COMPLETED, AuditEvent.Action.PROLIFIC_VERIFY),
]
# Prolific's recorded answers to every call these actions may make (checks included).
RECORDINGS = [
    "study_submissions",
    "submission_get",
    "bulk_approve",
    "transition_reject",
    "request_return",
]


class AnyOrderReplay(ReplayAdapter):
    """Answers each request with the recording made for its method and path, in any order.

    What an action checks with Prolific before acting is not this module's subject: only
    whether the action reached Prolific at all.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        sent = (request.method, request.path_url)
        match = [r for r in self.queue if (r["request"]["method"], r["request"]["path"]) == sent]
        assert match, f"unexpected request {request.method} {request.url}"
        self.queue.remove(match[0])
        self.queue.insert(0, match[0])
        return super().send(request, **kwargs)


@pytest.fixture
def staff(django_user_model):
    """Make a staff user with every view permission of the project's apps, plus `extra`."""

    def make(*extra: str):
        user = django_user_model.objects.create_user(
            f"staff{django_user_model.objects.count()}", password="x", is_staff=True
        )
        views = Permission.objects.filter(
            codename__startswith="view_",
            content_type__app_label__in=["survey", "analysis", "reconstruction"],
        )
        granted = [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in (perm.split(".") for perm in extra)
        ]
        user.user_permissions.add(*views, *granted)
        return user

    return make


@pytest.fixture
def study() -> Study:
    return StudyFactory(slug="pilot", prolific_study_id=STUDY_ID)


def exports() -> int:
    return AuditEvent.objects.filter(action=AuditEvent.Action.EXPORT).count()


def offered_actions(client, model: type) -> set[str]:
    page = client.get(reverse(f"admin:survey_{model._meta.model_name}_changelist"))
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is offered
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def post_action(client, model: type, action: str, *objects: object):
    return client.post(
        reverse(f"admin:survey_{model._meta.model_name}_changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


# --- API exports ------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["api-responses", "api-responses-csv"])
def test_view_only_staff_cannot_export_through_the_api(client, staff, study, url_name):
    client.force_login(staff())
    response = client.get(reverse(url_name, kwargs={"slug": study.slug}))
    assert response.status_code == 403
    assert "permission to export" in response.json()["detail"]
    assert exports() == 0


@pytest.mark.parametrize("url_name", ["api-responses", "api-responses-csv"])
def test_staff_with_the_export_permission_export_through_the_api(client, staff, study, url_name):
    client.force_login(staff(EXPORT))
    response = client.get(reverse(url_name, kwargs={"slug": study.slug}))
    assert response.status_code == 200
    assert exports() == 1


def test_the_export_permission_without_staff_status_exports_nothing(
    client, django_user_model, study
):
    user = django_user_model.objects.create_user("outsider", password="x")
    user.user_permissions.add(Permission.objects.get(codename="export_responses"))
    client.force_login(user)
    assert client.get(reverse("api-responses", kwargs={"slug": study.slug})).status_code == 403
    assert exports() == 0


# --- admin CSV download -----------------------------------------------------------------------


def test_view_only_staff_is_offered_no_study_action_and_a_posted_download_is_refused(
    client, staff, study
):
    client.force_login(staff())
    assert offered_actions(client, Study) == set()
    response = post_action(client, Study, "download_responses_csv", study)
    assert response.status_code == 200
    assert not response["Content-Type"].startswith("text/csv")  # the change list again
    assert exports() == 0


def test_staff_with_the_export_permission_download_the_csv_from_the_admin(client, staff, study):
    client.force_login(staff(EXPORT))
    assert offered_actions(client, Study) == {"download_responses_csv"}
    response = post_action(client, Study, "download_responses_csv", study)
    assert response["Content-Type"].startswith("text/csv")
    b"".join(response.streaming_content)
    assert exports() == 1


# --- Prolific operations ----------------------------------------------------------------------


def participant_in(study: Study, status: str) -> Participant:
    return Participant.objects.create(
        study=study,
        prolific_pid=PID,
        pseudonym=pseudonymise(PID),
        session_id=SUBMISSION,
        status=status,
    )


def test_view_only_staff_is_offered_no_prolific_action(client, staff, study):
    client.force_login(staff())
    assert offered_actions(client, Participant) == set()


@pytest.mark.parametrize(("action", "status"), [(a, s) for a, s, _r in PROLIFIC_ACTIONS])
def test_a_prolific_action_posted_by_view_only_staff_is_refused_and_sends_nothing(
    client, staff, study, replay, action, status
):
    replay["adapter"] = ReplayAdapter()  # any request to Prolific fails the test
    client.force_login(staff())
    response = post_action(client, Participant, action, participant_in(study, status))
    assert response.status_code == 200  # the change list again
    assert replay["adapter"].sent == []
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("action", "status", "audited"), PROLIFIC_ACTIONS)
def test_staff_with_the_prolific_permission_run_each_prolific_action(
    client, staff, study, replay, action, status, audited
):
    replay["adapter"] = AnyOrderReplay(*RECORDINGS)
    user = staff(OPERATE)
    client.force_login(user)
    assert offered_actions(client, Participant) == {name for name, _s, _a in PROLIFIC_ACTIONS}
    post_action(client, Participant, action, participant_in(study, status))
    assert replay["adapter"].sent
    assert AuditEvent.objects.get(action=audited).actor == user.username


def test_the_export_permission_does_not_grant_prolific_operations(client, staff, study, replay):
    replay["adapter"] = ReplayAdapter()
    client.force_login(staff(EXPORT))
    assert offered_actions(client, Participant) == set()
    participant = participant_in(study, Participant.Status.COMPLETED)
    post_action(client, Participant, "prolific_approve", participant)
    assert replay["adapter"].sent == []
