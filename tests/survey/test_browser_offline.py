"""30 s offline in the middle of a question: the page keeps the answer and retries until stored."""

import re
import time

import pytest

from survey.models import Assignment, Participant, RefusedRequest, Response
from tests.factories import study_with_match_sets
from tests.survey.browser_helpers import arrive, fast_forward_to_questions, fill_answer

pytestmark = pytest.mark.browser

OFFLINE_SECONDS = 30  # the figure, not shortened: the backoff runs as in production
OFFLINE_MESSAGE = (
    "You seem to be offline — your answer is kept and will be sent when the connection returns"
)


def test_answer_given_offline_is_kept_retried_with_backoff_and_stored_once(page, context):
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDOFFLINE1")
    fast_forward_to_questions(page, study, participant)
    first = Assignment.objects.get(participant=participant, position=1)
    assert not first.is_attention_check  # attention checks never come first
    tries: list[float] = []  # when each POST of the answer was sent
    page.on("request", lambda r: tries.append(time.monotonic()) if r.method == "POST" else None)

    fill_answer(page, photos=[2], confidence="Fairly confident")
    context.set_offline(True)
    offline_at = time.monotonic()
    page.get_by_role("button", name="Next question").click()
    status = page.locator("form.question .status")
    status.filter(has_text=OFFLINE_MESSAGE).wait_for(timeout=5_000)
    assert re.search(r"\(retrying in \d+ s\)\.$", status.inner_text())
    assert page.get_by_role("button", name="Saving…").is_disabled()

    # Offline for 30 s: the answer stays on screen, nothing reaches the server, the page keeps
    # telling the participant what is happening.
    while (left := OFFLINE_SECONDS - (time.monotonic() - offline_at)) > 0:
        page.wait_for_timeout(min(2.0, left) * 1000)
        assert page.url.endswith("/question/1/")
        assert OFFLINE_MESSAGE in status.inner_text()
    assert page.locator("#cand-2").is_checked()
    assert page.get_by_role("radio", name="Fairly confident", exact=True).is_checked()
    assert not Response.objects.filter(participant=participant).exists()
    # Backoff, not hammering: tries at 0, 1, 3, 7, 15 and 25 s.
    assert len(tries) == 6, f"{len(tries)} tries in {OFFLINE_SECONDS} s"

    context.set_offline(False)
    online_at = time.monotonic()
    page.wait_for_url("**/question/2/", timeout=15_000)
    assert len(tries) == 7
    # The `online` event sends it at once, not at the next backoff step (35 s).
    assert tries[-1] - online_at < 3, f"sent {tries[-1] - online_at:.1f} s after going online"
    assert page.locator("h1").inner_text().startswith("Question 2")

    response = Response.objects.get(participant=participant)
    assert response.assignment == first
    assert response.selected_ranks == [first.display_order(study.k)[1]]
    assert response.confidence == 4
    participant.refresh_from_db()
    assert participant.current_position == 2
    assert participant.status == Participant.Status.ACTIVE
    assert not RefusedRequest.objects.filter(participant=participant).exists()


def test_answer_retried_after_it_was_stored_is_kept_once(page, context, live_server):
    """The acknowledgement is lost (the connection drops after the server stored the answer):
    the retry changes nothing and the page still moves on."""
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDLOSTACK1")
    fast_forward_to_questions(page, study, participant)
    first = Assignment.objects.get(participant=participant, position=1)
    posts: list[int] = []

    def drop_first_reply(route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        reply = route.fetch(max_redirects=0)
        posts.append(reply.status)
        if len(posts) == 1:
            route.abort("connectionreset")  # stored by the server, but the page never hears it
        else:
            route.fulfill(response=reply)

    page.route("**/question/1/", drop_first_reply)
    fill_answer(page, photos=[3], confidence="Very confident")
    page.get_by_role("button", name="Next question").click()
    page.wait_for_url("**/question/2/", timeout=15_000)
    assert posts == [200, 200]  # the acknowledgement, with the next question (JSON)
    response = Response.objects.get(participant=participant)
    assert response.assignment == first
    assert response.selected_ranks == [first.display_order(study.k)[2]]
    assert response.confidence == 5


def test_answer_met_by_server_errors_is_kept_and_sent_again(page, context):
    """A 5xx (a restarting server, a proxy without upstream) is retried like a lost network."""
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDSERVER51")
    fast_forward_to_questions(page, study, participant)
    posts: list[int] = []

    def fail_twice(route) -> None:
        if route.request.method != "POST":
            route.continue_()
        elif len(posts) < 2:
            posts.append(503)
            route.fulfill(status=503, content_type="text/plain", body="upstream restarting")
        else:
            reply = route.fetch(max_redirects=0)
            posts.append(reply.status)
            route.fulfill(response=reply)

    page.route("**/question/1/", fail_twice)
    fill_answer(page, photos=[1], confidence="Slightly confident")
    page.get_by_role("button", name="Next question").click()
    page.locator("form.question .status").filter(
        has_text="The study's server had a problem — your answer is kept"
    ).wait_for(timeout=5_000)
    assert not Response.objects.filter(participant=participant).exists()
    page.wait_for_url("**/question/2/", timeout=15_000)
    assert posts == [503, 503, 200]
    response = Response.objects.get(participant=participant)
    assert response.confidence == 2
    assert not RefusedRequest.objects.filter(participant=participant).exists()
