"""Tampering with access: each attempt is refused with a clear 4xx and changes nothing.

Path traversal and guessed image names; admin and exports without a login.
(test_views.py and test_api.py cover the basic refusals; this file adds what they do not.
The other kinds of tampering are in test_tampering_answers.py and test_tampering_input.py.)
"""

import importlib
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, URLPattern, URLResolver, clear_url_caches, reverse

import config.urls
from config.wsgi import with_media
from survey.models import Assignment, Candidate
from tests.survey.http_helpers import at_questions, in_test_transaction, url
from tests.survey.tampering_helpers import (
    completed,
    state,
    study_fixture,  # noqa: F401  (the `study` fixture, found here by pytest)
)

pytestmark = pytest.mark.django_db


# Path traversal and guessed image names ------------------------------------------------------

TRAVERSALS = [
    "/s/../admin/",
    "/s/%2e%2e%2fadmin/",
    "/s/{slug}%2F..%2F..%2Fetc%2Fpasswd/",
    "/s/{slug}/..%2F..%2Fconfig%2Fsettings.py",
    "/s/{slug}/question/-1/",
    "/s/{slug}/question/..%2F1/",
    "/s/{slug}/question/1%00/",
    "/s/{slug}%00/",
    "/api/v1/studies/..%2F..%2F/state/",
    "/api/v1/studies/%2e%2e/responses.csv",
    "/api/v1/studies/{slug}/..%2Fresponses/",
    "/s/{slug}/question/1/..%2F..%2F",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_path_parameters_is_404(study, path):
    client = Client()
    at_questions(client, study)
    before = state(study)
    response = client.get(path.format(slug=study.slug))
    assert response.status_code == 404
    assert b"SECRET_KEY" not in response.content
    assert state(study) == before


def test_a_huge_question_number_is_redirected_not_an_error(study):
    client = Client()
    at_questions(client, study)
    before = state(study)
    huge = 10**30
    assert client.get(url("question", study, position=huge)).status_code == 302
    response = client.post(url("question", study, position=huge), {"question": "x"})
    assert response.status_code == 302
    assert state(study) == before


@pytest.fixture(params=["django-route", "production-wsgi"])
def media_get(request, settings) -> Iterator[Callable[[str], tuple[int, bytes]]]:
    """GET under /media/ from the app as configured to serve this test's MEDIA_ROOT.

    django-route: the URL conf's media route (FVR_SERVE_MEDIA, as in the demo).
    production-wsgi: config.wsgi's MediaFiles in front of Django (FVR_SERVE_MEDIA_WHITENOISE).
    """
    if request.param == "django-route":
        original = settings.FVR_SERVE_MEDIA
        settings.FVR_SERVE_MEDIA = True
        importlib.reload(config.urls)
        clear_url_caches()
        client = Client()

        def get(path: str) -> tuple[int, bytes]:
            response = client.get(path)
            body = b"".join(response) if response.streaming else response.content
            return response.status_code, body

        try:
            yield get
        finally:
            settings.FVR_SERVE_MEDIA = original
            importlib.reload(config.urls)
            clear_url_caches()
    else:
        settings.FVR_SERVE_MEDIA_WHITENOISE = True
        app = with_media(get_wsgi_application())

        def get(path: str) -> tuple[int, bytes]:
            seen: dict = {}

            def start_response(status: str, headers: list, exc_info: object = None) -> None:
                seen["status"] = int(status.split()[0])

            with in_test_transaction():
                body = b"".join(app(RequestFactory().get(path).environ, start_response))
            return seen["status"], body

        yield get


MEDIA_TRAVERSALS = [
    "/media/../{secret}",
    "/media/%2e%2e/{secret}",
    "/media/..%2f{secret}",
    "/media/studies/../../{secret}",
    "/media/studies/..%2F..%2F{secret}",
    "/media/....//{secret}",
    "/media/..\\{secret}",
    "/media/{root}/../{secret}",
    "/media/./../{secret}",
    "/media//etc/passwd",
    "/media/%2Fetc%2Fpasswd",
    "/media/studies/%00.jpg",
]


def test_media_refuses_traversal_and_guessed_names(study, media_get, settings):
    media_root = Path(settings.MEDIA_ROOT)
    secret = media_root.parent / f"secret-{uuid.uuid4().hex}.txt"
    secret.write_text("TOP-SECRET")
    image = Candidate.objects.first().image
    # The route is live: the refusals below are not just an absent route.
    assert media_get(image.url) == (200, image.read())
    for template in MEDIA_TRAVERSALS:
        path = template.format(secret=secret.name, root=media_root.name)
        status, body = media_get(path)
        assert status in (400, 404), path
        assert b"TOP-SECRET" not in body, path
    guesses = [
        f"/media/studies/{uuid.uuid4().hex}.jpg",
        "/media/studies/",
        "/media/",
        "/media/studies/synthetic-1.jpg",  # the name the file was uploaded under
        "/media/studies/true.jpg",
        "/media/studies/candidate-1.jpg",
    ]
    for path in guesses:
        assert media_get(path)[0] == 404, path


def test_image_urls_on_a_question_page_reveal_nothing_about_the_answer(study):
    client = Client()
    p = at_questions(client, study)
    page = client.get(url("question", study, position=1)).content.decode()
    assignment = Assignment.objects.get(participant=p, position=1)
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 1 + study.k
    for src in srcs:
        # Random names: neither the rank, the identity nor the truth is in a URL.
        assert re.fullmatch(r"/media/studies/[0-9a-f]{32}\.jpg", src), src
    for candidate in assignment.match_set.candidates.all():
        assert candidate.identity not in page
    assert assignment.match_set.target_identity not in page
    assert "is_true" not in page
    assert "true" not in " ".join(srcs)


# Admin and exports without a login ----------------------------------------------------------


def admin_urls(study) -> list[str]:
    """Every named URL of the admin site, with its parameters filled in."""
    values = {
        "object_id": str(study.pk),
        "pk": study.pk,
        "id": "1",
        "slug": study.slug,
        "name": "report.html",
        "app_label": "survey",
        "content_type_id": "1",
    }

    def walk(patterns: list) -> list[URLPattern]:
        found = []
        for item in patterns:
            found += walk(item.url_patterns) if isinstance(item, URLResolver) else [item]
        return found

    urls = []
    for pattern in walk(admin.site.get_urls()):
        if not pattern.name:
            continue
        names = set(getattr(pattern.pattern, "converters", {})) | set(
            pattern.pattern.regex.groupindex
        )
        try:
            urls.append(
                reverse(f"admin:{pattern.name}", kwargs={name: values[name] for name in names})
            )
        except (NoReverseMatch, KeyError):
            continue
    return urls


@pytest.mark.parametrize("who", ["anonymous", "participant", "user"])
def test_every_admin_url_sends_non_staff_to_the_login_page(study, who):
    client = Client()
    if who == "participant":
        at_questions(client, study)
    elif who == "user":
        user = get_user_model().objects.create_user("someone", password="pw-123456789")
        client.force_login(user)
    before = state(study)
    urls = admin_urls(study)
    assert len(urls) > 50  # every model admin's pages, the dashboards and the report views
    for path in urls:
        if path in (reverse("admin:login"), reverse("admin:logout")):
            continue  # the login page itself; logging out sends to the index, which is below
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(reverse("admin:login")), path
    assert state(study) == before


@pytest.mark.parametrize("name", ["api-responses", "api-responses-csv"])
def test_exports_refuse_a_participant_session_and_write_no_audit_event(study, name):
    client = Client()
    p = completed(client, study)
    before = state(study)
    response = client.get(reverse(name, kwargs={"slug": study.slug}))
    assert response.status_code == 403
    assert p.prolific_pid.encode() not in response.content
    assert p.pseudonym.encode() not in response.content
    assert state(study) == before  # AuditEvent count included
