"""Long jobs as Django tasks: enqueued in the database, run by `db_worker`, idempotent."""

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from reconstruction.models import Reconstruction, ReconstructorArtifact
from reconstruction.services import JobError, job_enqueue
from reconstruction.tasks import QUEUE

pytestmark = [pytest.mark.facedata, pytest.mark.django_db(transaction=True)]


def run_worker() -> None:
    """Run every job waiting on the reconstruction queue, then return."""
    call_command("db_worker", queue_name=QUEUE, batch=True, no_startup_delay=True, verbosity=0)


def test_jobs_run_by_the_worker_and_a_second_enqueue_reuses_the_work(tiny_lfw, mobileface):
    job_enqueue(job="eigenbasis", dataset=tiny_lfw, preset="tiny", seed=0, device="cpu")
    run_worker()
    first = DBTaskResult.objects.get()
    assert first.status == "SUCCESSFUL", first.traceback
    artifact = ReconstructorArtifact.objects.get()
    assert first.return_value == {"artifact": artifact.pk, "sha256": artifact.sha256}

    options = {"method": "eigenfaces", "recognizer": "mobileface", "preset": "tiny"}
    job_enqueue(job="reconstruct", dataset=tiny_lfw, **options)
    run_worker()
    done = DBTaskResult.objects.filter(task_path__endswith="reconstruct_job").get()
    assert done.status == "SUCCESSFUL", done.traceback
    made = Reconstruction.objects.count()
    assert made == done.return_value["created"] == 2  # the two target identities

    # Enqueued again (e.g. after a lost worker): nothing is redone or duplicated.
    job_enqueue(job="eigenbasis", dataset=tiny_lfw, preset="tiny", seed=0, device="cpu")
    job_enqueue(job="reconstruct", dataset=tiny_lfw, **options)
    run_worker()
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert ReconstructorArtifact.objects.count() == 1
    assert Reconstruction.objects.count() == made
    again = DBTaskResult.objects.filter(task_path__endswith="reconstruct_job")
    assert again.order_by("-enqueued_at").first().return_value["skipped"] == 2


@pytest.mark.parametrize(
    ("job", "options", "message"),
    [
        ("paint", {}, "unknown job 'paint'"),
        ("reconstruct", {"recognizer": "mobileface"}, "needs a method"),
        ("embed", {}, "needs a recognizer"),
        ("train", {"method": "eigenfaces", "recognizer": "mobileface"}, "eigenbasis"),
        ("embed", {"recognizer": "mobileface", "method": "naive"}, "takes no method"),
    ],
)
def test_bad_jobs_are_refused_with_the_reason(tiny_lfw, job, options, message):
    with pytest.raises(JobError, match=message):
        job_enqueue(job=job, dataset=tiny_lfw, **options)
    assert not DBTaskResult.objects.exists()


def test_a_job_on_a_dataset_never_imported_is_refused(db):
    with pytest.raises(JobError, match=r"run `manage\.py import_faces` first"):
        job_enqueue(job="embed", dataset="nowhere", recognizer="mobileface")


def test_admin_launches_a_job_and_lists_it(tiny_lfw, admin_client):
    url = reverse("admin:reconstruction_jobs")
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"db_worker --queue-name reconstruction" in page.content

    refused = admin_client.post(
        url, {"job": "embed", "dataset": tiny_lfw, "preset": "paper", "seed": 0, "device": "cpu"}
    )
    assert refused.status_code == 200
    assert b"needs a recognizer" in refused.content
    assert not DBTaskResult.objects.exists()

    data = {
        "job": "embed",
        "dataset": tiny_lfw,
        "recognizer": "mobileface",
        "preset": "paper",
        "seed": 0,
        "device": "cpu",
    }
    launched = admin_client.post(url, data, follow=True)
    assert b"enqueued" in launched.content
    queued = DBTaskResult.objects.get()
    assert queued.status == "READY"
    assert queued.args_kwargs["kwargs"] == {
        "dataset": tiny_lfw,
        "recognizer": "mobileface",
        "device": "cpu",
    }
    assert b"embed_job" in launched.content


def test_the_jobs_page_needs_a_staff_login(client):
    response = client.get(reverse("admin:reconstruction_jobs"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
