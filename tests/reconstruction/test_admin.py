"""The jobs page: staff who may view datasets see the queue; launching needs its permission."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from reconstruction.models import FaceDataset

pytestmark = pytest.mark.django_db

JOB = {"job": "eigenbasis", "dataset": "tiny", "preset": "tiny", "seed": 0, "device": "cpu"}


@pytest.fixture
def dataset() -> FaceDataset:
    return FaceDataset.objects.create(name="tiny", root="/nowhere", imported_at=timezone.now())


@pytest.fixture
def staff(django_user_model):
    """Make a staff user with the reconstruction app's view permissions, plus `extra`."""

    def make(*extra: str):
        user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
        perms = Permission.objects.filter(content_type__app_label="reconstruction")
        user.user_permissions.add(
            *perms.filter(codename__startswith="view_"), *perms.filter(codename__in=extra)
        )
        return user

    return make


def test_view_only_staff_see_the_queue_without_the_form_and_cannot_launch(client, staff, dataset):
    client.force_login(staff())
    url = reverse("admin:reconstruction_jobs")
    page = client.get(url)
    assert page.status_code == 200
    assert b"Recent jobs" in page.content
    assert b'value="Enqueue"' not in page.content
    assert b"needs the permission to launch" in page.content
    assert client.post(url, JOB).status_code == 403
    assert not DBTaskResult.objects.exists()
    changelist = client.get(reverse("admin:reconstruction_facedataset_changelist"))
    assert b"Launch a job" not in changelist.content


def test_staff_with_the_launch_permission_enqueue_a_job(client, staff, dataset):
    client.force_login(staff("launch_jobs"))
    url = reverse("admin:reconstruction_jobs")
    assert b'value="Enqueue"' in client.get(url).content
    response = client.post(url, JOB)
    assert response.status_code == 302
    queued = DBTaskResult.objects.get()
    assert queued.args_kwargs["kwargs"]["dataset"] == "tiny"
    changelist = client.get(reverse("admin:reconstruction_facedataset_changelist"))
    assert b"Launch a job" in changelist.content
