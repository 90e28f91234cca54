"""Only study images are public media; crops, reconstructions and weights are for staff only.

The files are named by the models' own upload_to functions, so the folders tested are the ones
the code writes to.
"""

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client, RequestFactory
from django.urls import clear_url_caches, reverse
from django.utils import timezone

import config.urls
from config.media import PUBLIC_MEDIA_DIR
from config.wsgi import with_media
from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Identity,
)
from survey.models import image_upload_to
from tests.factories import synthetic_jpeg
from tests.media_helpers import PNG, private_names


@pytest.fixture
def media(settings) -> dict[str, str]:
    """One public study image and each private kind of file, on disk under MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT)
    names = {"study image": image_upload_to(None, "query.jpg"), **private_names()}
    for name in names.values():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(PNG)
    (root.parent / "outside.txt").write_text("not media")
    return names


def test_study_images_are_the_public_folder_and_nothing_private_is_in_it() -> None:
    assert image_upload_to(None, "x.jpg").startswith(f"{PUBLIC_MEDIA_DIR}/")
    for name in private_names().values():
        assert not name.startswith(f"{PUBLIC_MEDIA_DIR}/"), name


@pytest.fixture(params=["wsgi-media-files", "debug-serve-route"])
def public_get(request, settings) -> Iterator[Callable[[str], int]]:
    """GET a URL from the app set up to serve media, in production (config.wsgi.MediaFiles in
    front of Django) or in the local demo (the URL conf's DEBUG route)."""
    if request.param == "wsgi-media-files":
        settings.FVR_SERVE_MEDIA_WHITENOISE = True
        app = with_media(WSGIHandler())

        def get(path: str) -> int:
            seen = {}

            def start_response(status: str, headers: list, exc_info: object = None) -> None:
                seen["status"] = int(status.split()[0])

            b"".join(app(RequestFactory().get(path).environ, start_response))
            return seen["status"]

        yield get
    else:
        settings.FVR_SERVE_MEDIA = True
        importlib.reload(config.urls)
        clear_url_caches()
        try:
            yield lambda path: Client().get(path).status_code
        finally:
            settings.FVR_SERVE_MEDIA = False
            importlib.reload(config.urls)
            clear_url_caches()


@pytest.mark.django_db
def test_only_study_images_are_served_to_the_public(media, public_get) -> None:
    assert public_get(f"/media/{media['study image']}") == 200
    for kind in ("crop", "reconstruction", "weights"):
        assert public_get(f"/media/{media[kind]}") == 404, kind
    for path in (
        f"/media/{PUBLIC_MEDIA_DIR}/../{media['crop']}",
        f"/media/{PUBLIC_MEDIA_DIR}/..%2f{media['weights']}",
        f"/media/{PUBLIC_MEDIA_DIR}/../../outside.txt",
    ):
        assert public_get(path) in (400, 404), path


def staff_url(name: str) -> str:
    return reverse("staff_media", kwargs={"name": name})


@pytest.mark.django_db
def test_staff_see_private_media_through_their_own_view(media, admin_client) -> None:
    crop = admin_client.get(staff_url(media["crop"]))
    assert crop.status_code == 200
    assert b"".join(crop.streaming_content) == PNG
    assert crop["Content-Type"] == "image/png"
    assert crop["Cache-Control"] == "private, no-store"
    assert crop["X-Content-Type-Options"] == "nosniff"
    weights = admin_client.get(staff_url(media["weights"]))
    assert weights.status_code == 200
    assert weights["Content-Disposition"].startswith("attachment")  # never shown in the page


@pytest.mark.django_db
def test_the_staff_view_asks_anyone_else_to_log_in(media, django_user_model) -> None:
    participant = Client()
    response = participant.get(staff_url(media["crop"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    user = django_user_model.objects.create_user("member", password="pw-not-staff")
    participant.force_login(user)
    assert participant.get(staff_url(media["weights"])).status_code == 302


@pytest.mark.django_db
def test_the_staff_view_stays_inside_media_root(media, admin_client, settings) -> None:
    root = Path(settings.MEDIA_ROOT)
    (root / "faces" / "escape").symlink_to(root.parent)
    for path in (
        f"/staff/media/{PUBLIC_MEDIA_DIR}/../../outside.txt",
        "/staff/media/..%2Foutside.txt",
        "/staff/media/faces/%2E%2E/%2E%2E/outside.txt",
        "/staff/media/faces//lfw",
        "/staff/media/faces/escape/outside.txt",  # a link out of the folder
        "/staff/media/faces/lfw",  # a folder, not a file
        "/staff/media/faces/lfw/absent.png",
    ):
        response = admin_client.get(path)
        assert response.status_code == 404, path
        assert b"not media" not in response.content, path


@pytest.mark.django_db
def test_admin_thumbnails_of_crops_come_from_the_staff_view(admin_client) -> None:
    dataset = FaceDataset.objects.create(name="lfw", root="/nowhere", imported_at=timezone.now())
    identity = Identity.objects.create(dataset=dataset, name="Ann_Doe", split="target")
    image = FaceImage(
        dataset=dataset,
        identity=identity,
        relative_path="Ann_Doe/Ann_Doe_0001.jpg",
        sha256="0" * 64,
        status="ok",
        landmarks=[[0, 0]] * 5,
    )
    image.aligned.save("Ann_Doe_0001-aligned.jpg", synthetic_jpeg(1), save=False)
    image.crop160.save("Ann_Doe_0001-160.jpg", synthetic_jpeg(2), save=False)
    image.save()
    page = admin_client.get(reverse("admin:reconstruction_faceimage_change", args=[image.pk]))
    html = page.content.decode()
    for field_file in (image.aligned, image.crop160):
        src = staff_url(field_file.name)
        assert f'src="{src}"' in html
        assert admin_client.get(src).status_code == 200
        assert Client().get(src).status_code == 302
    assert '"/media/faces/' not in html  # the file links too
    assert 'href="/staff/media/faces/' in html
