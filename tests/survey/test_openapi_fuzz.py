"""Schemathesis over the API's own OpenAPI schema: no server errors, no schema violations.

The schema is loaded from the WSGI application (the real URL conf, middleware and DRF stack)
and every request goes through it. Participant operations run with a real participant session
and CSRF token, exports with a staff session, and every operation also anonymously, which must
be refused as documented. Cases are drawn both inside the schema (positive) and outside it
(negative: which must be refused with a 4xx).
"""

from collections import Counter

import pytest
import schemathesis
from django.contrib.auth import get_user_model
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
from survey.models import Response
from tests.factories import study_with_match_sets
from tests.survey.http_helpers import at_questions, in_test_transaction

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


@pytest.fixture
def target() -> FuzzTarget:
    return FuzzTarget()


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
    """Point a generated case at the real study: random slugs would only ever meet 404.

    Containers are replaced, not edited in place, so that schemathesis re-checks whether a
    negative case is still negative before judging the response.
    """
    if "slug" in (case.path_parameters or {}) and data.draw(st.booleans(), label="real slug"):
        case.path_parameters = {**case.path_parameters, "slug": target.study.slug}
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
    operations = api_schema.include(path_regex=r"/state/$")

    def call(case, data):
        return aimed(case, data, target).call_and_validate(
            cookies=target.participant_cookies, headers=target.participant_headers, checks=CHECKS
        )

    seen = fuzz(operations, mode, call)
    if mode == GenerationMode.POSITIVE:
        # The success responses were reached (and so checked against the schema) too.
        assert seen["GET /api/v1/studies/{slug}/state/", 200], seen


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
