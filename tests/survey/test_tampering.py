"""Tampering and bad input: each attempt is refused with a clear 4xx, logged, and changes nothing.

Answers out of order, for someone else, after completion or changed; hostile Prolific
parameters; path traversal and guessed image names; admin and exports without a login;
oversized, non-UTF-8 and malformed bodies on the participant forms (the answer form included).
(test_views.py and test_api.py cover the basic refusals; this file adds what they do not.)
"""

import importlib
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, URLPattern, URLResolver, clear_url_caches, reverse

import config.urls
from config.wsgi import with_media
from survey.models import (
    Assignment,
    AuditEvent,
    Candidate,
    PageVisit,
    Participant,
    RefusedRequest,
    Response,
    Study,
)
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets
from tests.survey import helpers
from tests.survey.http_helpers import (
    JSON,
    PARAMS,
    answer_fields,
    answer_payload,
    at_questions,
    in_test_transaction,
    script_answer,
    url,
)

pytestmark = pytest.mark.django_db

OTHER = {
    "PROLIFIC_PID": prolific_id("PIDOTHER001"),
    "STUDY_ID": STUDY_ID,
    "SESSION_ID": prolific_id("SESSOTHER1"),
}


@pytest.fixture
def study():
    return study_with_match_sets(prolific_study_id=STUDY_ID)


def state(study) -> tuple:
    """Every row a refused request must leave as it was."""
    return (
        list(
            Participant.objects.filter(study=study)
            .order_by("pk")
            .values_list(
                "pk", "step", "status", "current_position", "completion_code", "attention_failures"
            )
        ),
        list(
            Response.objects.filter(participant__study=study)
            .order_by("pk")
            .values_list("pk", "assignment_id", "selected_ranks", "none_selected", "confidence")
        ),
        Assignment.objects.filter(participant__study=study).count(),
        list(PageVisit.objects.order_by("pk").values_list("pk", "submitted_at")),
        AuditEvent.objects.count(),
    )


def refusals(reason: str) -> list[str]:
    return list(RefusedRequest.objects.filter(reason=reason).values_list("detail", flat=True))


# Answers: out of order, someone else's, after completion, changed --------------------------


def test_form_answer_to_a_later_question_is_redirected_logged_and_ignored(study):
    client = Client()
    p = at_questions(client, study)
    later = Assignment.objects.get(participant=p, position=3)
    before = state(study)
    response = client.post(
        url("question", study, position=3),
        {"question": str(later.token), "selected": ["1"], "confidence": "3"},
    )
    assert response.status_code == 302
    assert response["Location"] == url("question", study, position=1)
    assert state(study) == before
    assert refusals("answer_refused") == [
        "Refused: an answer to question 3 was submitted while the participant is at question 1."
    ]


def test_a_later_questions_token_posted_on_the_current_page_is_refused_with_409(study):
    client = Client()
    p = at_questions(client, study)
    later = Assignment.objects.get(participant=p, position=2)
    before = state(study)
    response = client.post(
        url("question", study, position=1),
        {"question": str(later.token), "selected": ["1"], "confidence": "3"},
    )
    assert response.status_code == 409
    assert b"This is question 2, but you are on question 1" in response.content
    assert state(study) == before
    assert len(refusals("answer_refused")) == 1


def test_script_answer_with_another_participants_token_is_403_logged_and_ignored(study):
    owner = at_questions(Client(), study)
    intruder = Client()
    at_questions(intruder, study, OTHER)
    victim_question = Assignment.objects.get(participant=owner, position=1)
    before = state(study)
    response = script_answer(intruder, study, 1, answer_fields(victim_question, [1]))
    assert response.status_code == 403
    assert response.json() == {
        "error": "This question does not belong to you.",
        "code": "not_your_question",
    }
    assert state(study) == before
    assert len(refusals("not_your_question")) == 1


def test_script_answer_with_an_unknown_token_is_403_and_ignored(study):
    client = Client()
    at_questions(client, study)
    before = state(study)
    body = {"question": str(uuid.uuid4()), "selected": ["1"], "confidence": "3"}
    response = script_answer(client, study, 1, body)
    assert response.status_code == 403
    assert state(study) == before


def test_a_changed_answer_from_the_script_is_not_taken_and_the_first_stands(study):
    client = Client()
    p = at_questions(client, study)
    first = Assignment.objects.get(participant=p, position=1)
    assert not first.is_attention_check  # attention checks never come first
    assert script_answer(client, study, 1, answer_fields(first, [2], 5)).status_code == 200
    before = state(study)
    changed = script_answer(client, study, 1, answer_fields(first, [], 1, none=True))
    assert changed.status_code == 200
    assert changed.json()["notice"].endswith("your first answer is kept.")
    assert state(study) == before
    stored = Response.objects.get(assignment=first)
    assert (stored.selected_ranks, stored.none_selected, stored.confidence) == ([2], False, 5)


def completed(client: Client, study) -> Participant:
    """A participant who answered every question and finished, in `client`'s session."""
    p = at_questions(client, study)
    for _ in range(study.question_count):
        p = helpers.answer_current(p).participant
    assert client.post(url("debrief", study)).status_code == 302
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    return p


def test_answers_after_completion_change_nothing(study):
    client = Client()
    p = completed(client, study)
    last = Assignment.objects.get(participant=p, position=study.question_count)
    before = state(study)
    form = client.post(
        url("question", study, position=last.position),
        {"question": str(last.token), "selected": ["4"], "confidence": "1"},
    )
    assert form.status_code == 302
    assert form["Location"] == url("done", study)
    assert "at done" in refusals("answer_refused")[0]
    script = script_answer(client, study, last.position, answer_fields(last, [4], 1))
    assert script.status_code == 200
    assert script.json()["next"] == url("done", study)
    assert state(study) == before
    # The completion code is the one issued at the end, however often the end is visited.
    done = client.get(url("done", study))
    assert done["Location"].endswith(f"cc={study.completion_code}")


def test_answers_after_failing_the_attention_checks_are_refused_with_409(study):
    # Failed on the first check, so a question is always left to try: the second of two checks
    # may be the last question (positions are random), which left none and made this flaky.
    Study.objects.filter(pk=study.pk).update(attention_failures_allowed=0)
    study.refresh_from_db()
    client = Client()
    p = at_questions(client, study)
    while p.status == Participant.Status.ACTIVE:
        p = helpers.answer_current(p, follow_checks=False).participant
    assert p.status == Participant.Status.FAILED_ATTENTION
    unanswered = Assignment.objects.filter(participant=p, response__isnull=True).first()
    assert unanswered is not None
    before = state(study)
    # Posted on the page the participant was last shown (its position is still current).
    p.refresh_from_db()
    page = url("question", study, position=p.current_position)
    form = client.post(page, answer_fields(unanswered, [1]))
    assert form.status_code == 302
    assert form["Location"] == url("done", study)
    script = client.post(page, answer_fields(unanswered, [1]), **JSON)
    assert script.status_code == 200
    assert script.json()["next"] == url("done", study)
    assert state(study) == before
    assert len(refusals("answer_refused")) == 2


# Hostile Prolific parameters ----------------------------------------------------------------

HOSTILE_IDS = [
    pytest.param("", "missing", id="empty"),
    pytest.param("A" * 10_000, "not a valid", id="10-kB"),
    pytest.param("' OR '1'='1", "not a valid", id="sql-or"),
    pytest.param("PID1'; DROP TABLE survey_participant; --", "not a valid", id="sql-drop"),
    pytest.param("<script>alert(1)</script>", "not a valid", id="script"),
    pytest.param('"><img src=x onerror=alert(1)>', "not a valid", id="html-attr"),
    pytest.param("PID\x00000001", "not a valid", id="nul"),
    pytest.param("\x00" * 8, "not a valid", id="only-nul"),
    pytest.param("\u0420ID0000001", "not a valid", id="cyrillic-homoglyph"),
    pytest.param(
        "".join(chr(ord(c) + 0xFEE0) for c in "PID0000001"), "not a valid", id="fullwidth"
    ),
    pytest.param("PID0000001\u200b", "not a valid", id="zero-width-space"),
    pytest.param(" PID0000001", "not a valid", id="leading-space"),
    pytest.param("PID0000001\n", "not a valid", id="trailing-newline"),
    pytest.param("PID 000001", "not a valid", id="inner-space"),
    pytest.param("\tPID000001", "not a valid", id="tab"),
    pytest.param("../../etc/passwd", "not a valid", id="traversal"),
]


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize(("value", "problem"), HOSTILE_IDS)
def test_hostile_prolific_parameters_are_refused_logged_and_never_echoed(
    study, name, value, problem
):
    client = Client()
    response = client.get(url("entry", study), {**PARAMS, name: value}, follow=True)
    assert response.redirect_chain == [(url("refused", study), 302)]
    assert response.status_code == 400
    text = response.content.decode()
    assert f"{name} is {problem}" in text or f"missing {name}" in text
    assert "open the study again from Prolific" in text
    if len(value) > 3:
        assert value not in text  # never echoed back, as markup or otherwise
    assert not Participant.objects.exists()
    logged = refusals("entry_refused")
    assert len(logged) == 1
    assert value.strip() == "" or value not in logged[0]
    # The browser got no participant: the study's pages stay closed to it.
    assert client.get(url("consent", study)).status_code == 403


def test_a_non_utf8_prolific_pid_in_the_query_string_is_refused(study):
    query = f"PROLIFIC_PID=%FF%FEPID0001&STUDY_ID={STUDY_ID}&SESSION_ID={prolific_id(1)}"
    response = Client().get(f"{url('entry', study)}?{query}", follow=True)
    assert response.status_code == 400
    assert b"PROLIFIC_PID is not a valid" in response.content
    assert not Participant.objects.exists()
    assert len(refusals("entry_refused")) == 1


def test_a_known_pid_with_a_mismatched_study_id_gets_no_session(study):
    at_questions(Client(), study)
    before = state(study)
    stranger = Client()
    response = stranger.get(
        url("entry", study), {**PARAMS, "STUDY_ID": prolific_id("OTHERSTUDY1")}, follow=True
    )
    assert response.status_code == 400
    assert b"STUDY_ID does not belong to this study" in response.content
    assert stranger.get(url("question", study, position=1)).status_code == 403
    assert state(study) == before
    assert len(refusals("entry_refused")) == 1


def test_a_reused_session_id_gives_the_second_pid_no_session(study):
    at_questions(Client(), study)
    before = state(study)
    impostor = Client()
    response = impostor.get(
        url("entry", study), {**PARAMS, "PROLIFIC_PID": prolific_id("PIDIMPOSTOR")}, follow=True
    )
    assert response.status_code == 400
    assert impostor.get(url("question", study, position=1)).status_code == 403
    api_state = impostor.get(reverse("api-state", kwargs={"slug": study.slug}))
    assert api_state.status_code == 403
    assert state(study) == before


def test_a_nul_byte_in_the_user_agent_is_dropped_not_a_server_error(study):
    # PostgreSQL cannot store NUL in text: this was a 500 there.
    response = Client().get(url("entry", study), PARAMS, HTTP_USER_AGENT="Mozilla/5.0\x00<x>")
    assert response.status_code == 302
    assert Participant.objects.get().user_agent == "Mozilla/5.0<x>"


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


# Oversized, non-UTF-8 and malformed bodies ---------------------------------------------------

FORM_PAGES = ["consent", "demographics", "instructions", "question", "debrief"]


def on_page(study, page: str) -> tuple[Client, str, str]:
    """A browser that checks CSRF as in production, showing `page`: (client, URL, CSRF token).

    Each page is fetched before it is submitted, as a browser does (the fetch records the
    visit and sets the CSRF cookie the submission must carry).
    """
    client = Client(enforce_csrf_checks=True)
    client.get(url("entry", study), PARAMS)
    steps = [
        ("consent", {"decision": "agree"}),
        ("demographics", {"gender": "woman", "age_group": "18-29"}),
        ("instructions", {}),
    ]
    for name, data in steps:
        client.get(url(name, study))
        token = client.cookies["csrftoken"].value
        if name == page:
            return client, url(name, study), token
        response = client.post(url(name, study), {**data, "csrfmiddlewaretoken": token})
        assert response.status_code == 302
    p = Participant.objects.get(study=study)
    if page == "debrief":
        for _ in range(study.question_count):
            p = helpers.answer_current(p).participant
    path = url(page, study) if page == "debrief" else url("question", study, position=1)
    assert client.get(path).status_code == 200
    return client, path, client.cookies["csrftoken"].value


def form_post(client: Client, path: str, body: bytes):
    return client.generic("POST", path, body, content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("page", FORM_PAGES)
def test_an_oversized_form_body_is_400_logged_and_changes_nothing(study, page, caplog):
    client, path, token = on_page(study, page)
    before = state(study)
    padding = b"x" * django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = form_post(client, path, f"csrfmiddlewaretoken={token}&pad=".encode() + padding)
    assert response.status_code == 400
    assert b"Nothing was changed" in response.content  # templates/400.html, not a bare page
    assert state(study) == before
    assert any(r.name == "django.security.RequestDataTooBig" for r in caplog.records)


@pytest.mark.parametrize("page", FORM_PAGES)
def test_too_many_form_fields_are_400_logged_and_change_nothing(study, page, caplog):
    client, path, token = on_page(study, page)
    before = state(study)
    fields = "&".join(["selected=1"] * (django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = form_post(client, path, f"csrfmiddlewaretoken={token}&{fields}".encode())
    assert response.status_code == 400
    assert b"Nothing was changed" in response.content
    assert state(study) == before
    assert any(r.name == "django.security.TooManyFieldsSent" for r in caplog.records)


@pytest.mark.parametrize(
    ("page", "body", "message"),
    [
        ("consent", b"decision=\xff\xfeagree", b"Select a valid choice"),
        ("demographics", b"gender=wo\xffman&age_group=18-29", b"Select a valid choice"),
        ("question", b"question=\xff\xfe&selected=1&confidence=3", b"Please check your answer"),
        ("question", b"question={token}&selected=\xc3\x28&confidence=3", b"numbered 1 to 5"),
        ("question", b"question={token}&selected=1&confidence=\xff3", b"from 1 to 5"),
    ],
)
def test_non_utf8_form_bodies_are_400_with_a_message_and_change_nothing(study, page, body, message):
    client, path, csrf = on_page(study, page)
    p = Participant.objects.get(study=study)
    if page == "question":
        body = body.replace(b"{token}", answer_payload(p)["question"].encode())
    before = state(study)
    response = form_post(client, path, body + f"&csrfmiddlewaretoken={csrf}".encode())
    assert response.status_code == 400
    assert message in response.content
    assert state(study) == before
