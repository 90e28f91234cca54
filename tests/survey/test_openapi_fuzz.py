"""Schemathesis over the API's own OpenAPI schema: no server errors, no schema violations.

The schema is loaded from the WSGI application (the real URL conf, middleware and DRF stack)
and every request goes through it. Participant operations run with a real participant session
and CSRF token, exports with a staff session, and every operation also anonymously, which must
be refused as documented. Cases are drawn both inside the schema (positive) and outside it
(negative: which must be refused with a 4xx).
"""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from survey import browser
from survey.models import Assignment, Participant, Response
from tests.factories import study_with_match_sets
from tests.survey.test_views import at_questions

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Per operation and generation mode; the whole module runs in well under a minute.
EXAMPLES = 100
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


class FuzzTarget:
    """The study the fuzzer aims at, and the cookies and headers of its sessions."""

    def __init__(self) -> None:
        self.study = study_with_match_sets(per_method=2, questions_per_method=2)
        participant_client = Client()
        self.participant = at_questions(participant_client, self.study)
        # The question page sets the CSRF cookie, as it does for the page's own script.
        page = participant_client.get(
            reverse("survey:question", kwargs={"slug": self.study.slug, "position": 1})
        )
        assert page.status_code == 200
        csrf = participant_client.cookies["csrftoken"].value
        self.participant_cookies = {
            browser.COOKIE: participant_client.cookies[browser.COOKIE].value,
            "csrftoken": csrf,
        }
        self.participant_headers = {"X-CSRFToken": csrf}
        staff = get_user_model().objects.create_superuser("fuzz-admin", password="pw-123456789")
        staff_client = Client()
        staff_client.force_login(staff)
        self.staff_cookies = {"sessionid": staff_client.cookies["sessionid"].value}

    def current_token(self) -> str | None:
        p = Participant.objects.get(pk=self.participant.pk)
        token = (
            Assignment.objects.filter(participant=p, position=p.current_position)
            .values_list("token", flat=True)
            .first()
        )
        return str(token) if token else None


@pytest.fixture
def target() -> FuzzTarget:
    return FuzzTarget()


@contextmanager
def in_test_transaction() -> Iterator[None]:
    """Call the WSGI application inside the test's database transaction.

    Django's WSGI handler closes the database connection after each request (as a server
    must); Django's test client switches that off for each of its own requests (and back on
    after them), and so must any other in-process client, or PostgreSQL loses the test's
    transaction after the first request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema():
    """The OpenAPI schema, fetched from the production WSGI application (config.wsgi)."""
    with in_test_transaction():
        schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
    # The cookies are sent by the tests themselves (a real participant's or staff's session, or
    # none): a generated or negated `sessionid` would be overwritten and mislead the checks.
    schema.config.generation.update(with_security_parameters=False)
    return schema


def aimed(case, data: st.DataObject, target: FuzzTarget):
    """Point a generated case at the real study and, sometimes, the current question.

    Random slugs and UUIDs would only ever meet 404 and "not your question", and random ranks
    (the schema cannot bound them: K is per study) almost never form a valid answer; the views'
    logic past those checks runs only for the real study and the participant's own question.
    Containers are replaced, not edited in place, so that schemathesis re-checks whether a
    negative case is still negative before judging the response.
    """
    if "slug" in (case.path_parameters or {}) and data.draw(st.booleans(), label="real slug"):
        case.path_parameters = {**case.path_parameters, "slug": target.study.slug}
    if isinstance(case.body, dict) and "question" in case.body:
        token = target.current_token()
        if token and data.draw(st.booleans(), label="current question"):
            body = {**case.body, "question": token}
            if data.draw(st.booleans(), label="ranks within K"):
                k = target.study.k
                body["selected_photos"] = data.draw(
                    st.lists(st.integers(1, k), min_size=1, max_size=k, unique=True)
                )
                body["none_of_these"] = False
            case.body = body
    return case


def fuzz(schema, mode: GenerationMode, call) -> Counter:
    """Run `call(case)` over generated cases of each operation; count (operation, status)."""
    # Schemathesis' own pytest integration (schema.parametrize) fails under pytest 9 (it sets
    # a node's private _nodeid), so the cases come from its strategies through hypothesis.
    seen: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the filter matched no operation of the schema"
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        def run(case, data) -> None:
            seen[case.operation.label, call(case, data).status_code] += 1

        with in_test_transaction():
            run()
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_participant_operations_as_the_participant(api_schema, target, mode):
    operations = api_schema.include(path_regex=r"/(state|answers)/$")

    def call(case, data):
        return aimed(case, data, target).call_and_validate(
            cookies=target.participant_cookies, headers=target.participant_headers, checks=CHECKS
        )

    seen = fuzz(operations, mode, call)
    if mode == GenerationMode.POSITIVE:
        # The success responses were reached (and so checked against the schema) too.
        assert seen["GET /api/v1/studies/{slug}/state/", 200], seen
        assert seen["POST /api/v1/studies/{slug}/answers/", 201], seen


@pytest.mark.parametrize("mode", MODES)
def test_export_operations_as_staff(api_schema, target, mode):
    operations = api_schema.include(path_regex=r"/responses")

    def call(case, data):
        return aimed(case, data, target).call_and_validate(
            cookies=target.staff_cookies, checks=CHECKS
        )

    seen = fuzz(operations, mode, call)
    if mode == GenerationMode.POSITIVE:
        assert seen["GET /api/v1/studies/{slug}/responses/", 200], seen
        assert seen["GET /api/v1/studies/{slug}/responses.csv", 200], seen


@pytest.mark.parametrize("mode", MODES)
def test_every_operation_anonymously_is_refused(api_schema, target, mode):
    before = list(Response.objects.values_list("pk", flat=True))

    def call(case, data):
        response = aimed(case, data, target).call_and_validate(checks=CHECKS)
        assert response.status_code in {400, 403, 404}, response.status_code
        return response

    fuzz(api_schema, mode, call)
    assert list(Response.objects.values_list("pk", flat=True)) == before
