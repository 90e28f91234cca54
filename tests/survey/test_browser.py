"""A participant's path in a real browser: Chromium (Playwright) against a live server."""

import re
import time
from pathlib import Path

import pytest
from django.db.models import Count

from survey import services
from survey.models import Assignment, Candidate, Confidence, PageVisit, Participant, Response
from tests.factories import STUDY_ID, study_with_match_sets
from tests.survey.browser_helpers import (
    arrive,
    fast_forward_to_questions,
    fill_answer,
    images_loaded,
)
from tests.survey.helpers import answer_current, current

pytestmark = pytest.mark.browser

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete"
SCREENSHOT_DIR = Path("/tmp/fvr-browser-screenshots")
QUESTION_URL = re.compile(r"/question/(\d+)/$")


def question_number(page) -> int:
    match = QUESTION_URL.search(page.url)
    assert match, f"not on a question page: {page.url}"
    return int(match.group(1))


def attention_instruction(page) -> tuple[int, str] | None:
    """(photo, confidence label) if the page asks for an instructed response, else None."""
    box = page.locator("#attention")
    if not box.count():
        return None
    text = box.inner_text()
    match = re.search(r"select photo (\d+) only and answer “(.+?)”", text)
    assert match, f"unreadable attention instruction: {text!r}"
    return int(match.group(1)), match.group(2)


def answer_by_mouse(page, *, photos: list[int], confidence: str) -> int:
    """Answer the current question and wait for the next page; return the answered number."""
    number = question_number(page)
    fill_answer(page, photos=photos, confidence=confidence)
    page.locator("form.question button[type=submit]").click()
    page.wait_for_url(lambda url: not url.endswith(f"/question/{number}/"))
    return number


def answer_as_told(page, *, fail_checks: bool = False) -> int:
    """Answer like an attentive participant (or one who ignores the instructions)."""
    told = attention_instruction(page)
    if told is None:
        return answer_by_mouse(page, photos=[1], confidence="Somewhat confident")
    photo, label = told
    if fail_checks:
        photo = photo % 5 + 1
    return answer_by_mouse(page, photos=[photo], confidence=label)


def answer_by_keyboard(page) -> int:
    """Answer with Tab, Space and arrow keys only: photo 1, 'Slightly confident'."""
    number = question_number(page)
    page.locator("h1").click()  # start from the page, not from a form control

    def tab_to(selector: str, limit: int = 20) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#cand-1")
    outline = page.evaluate(
        "() => getComputedStyle(document.activeElement.closest('label')).outlineStyle"
    )
    assert outline != "none", "the focused photo has no visible focus indicator"
    page.keyboard.press("Space")
    assert page.locator("#cand-1").is_checked()
    tab_to("input[name=confidence]")
    page.keyboard.press("Space")  # first radio: "Not confident at all"
    page.keyboard.press("ArrowDown")  # move to "Slightly confident"
    assert page.locator("#conf-2").is_checked()
    tab_to("form.question button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: not url.endswith(f"/question/{number}/"))
    return number


def assert_images_reveal_nothing(page, study) -> None:
    """Image URLs are random names; no identity or truth flag shows in the page."""
    sources = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
    assert len(sources) == 1 + study.k
    for src in sources:
        assert re.fullmatch(r"/media/studies/[0-9a-f]{32}\.jpg", src), src
    html = page.content().lower()
    assert "true" not in " ".join(sources).lower()
    identities = Candidate.objects.filter(match_set__study=study).values_list("identity", flat=True)
    for identity in {i.lower() for i in identities}:
        assert identity not in html


def assert_next_images_prefetched(page, participant, number: int, requested: set[str]) -> None:
    """The page asks for the next question's images (and the browser fetches them)."""
    prefetched = page.eval_on_selector_all(
        "link[rel=prefetch]", "els => els.map(e => e.getAttribute('href'))"
    )
    following = Assignment.objects.filter(participant=participant, position=number + 1)
    if not following.exists():
        assert prefetched == []
        return
    nxt = following.select_related("match_set").get().match_set
    expected = {nxt.query_image.url} | {c.image.url for c in nxt.candidates.all()}
    assert set(prefetched) == expected
    deadline = time.monotonic() + 3
    while not expected <= requested and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert expected <= requested, f"not fetched ahead: {expected - requested}"


def assert_one_response_per_question(participant: Participant, answered: int) -> None:
    rows = Response.objects.filter(participant=participant)
    positions = sorted(rows.values_list("assignment__position", flat=True))
    assert positions == list(range(1, answered + 1))
    duplicates = rows.values("assignment").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()


def test_participant_completes_the_study_with_reload_back_and_keyboard(page, context, live_server):
    study = study_with_match_sets(per_method=5, prolific_study_id=STUDY_ID)
    requested: set[str] = set()
    context.on("request", lambda r: requested.add(r.url.removeprefix(live_server.url)))
    documents: list[str] = []  # pages loaded (not shown in place by the page's script)
    page.on(
        "request",
        lambda r: (
            documents.append(r.url.removeprefix(live_server.url))
            if r.resource_type == "document"
            else None
        ),
    )
    participant = arrive(page, study, pid="PIDFULL0001")
    assert page.url.endswith(f"/s/{study.slug}/consent/")

    page.get_by_role("radio", name="I agree to take part").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/about-you/")
    page.get_by_role("group", name="Gender").get_by_role("radio", name="Woman").check()
    page.get_by_role("group", name="Age group").get_by_role("radio", name="30–39").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/instructions/")
    assert "worked example" in page.inner_text("main").lower()
    page.get_by_role("button", name="Start the questions").click()
    page.wait_for_url("**/question/1/")

    total = study.question_count
    assert total == 22
    checks_seen, by_keyboard = 0, None
    while QUESTION_URL.search(page.url):
        number = question_number(page)
        assert page.locator("h1").inner_text().startswith(f"Question {number}")
        assert all(w > 0 for w in images_loaded(page)), "a question image did not load"
        assert_images_reveal_nothing(page, study)
        assert_next_images_prefetched(page, participant, number, requested)

        told = attention_instruction(page)
        if told is not None:
            checks_seen += 1
            a = Assignment.objects.get(participant=participant, position=number)
            assert a.is_attention_check
            photo = a.photo_number(a.attention_rank, study.k)
            assert told == (photo, Confidence(a.attention_confidence).label)

        if number == 3:
            # The skip link (a fragment, its own history entry): Back from it stays here.
            page.locator("a.skip").focus()
            page.keyboard.press("Enter")
            assert page.url.endswith("/question/3/#main")
            page.go_back()
            assert question_number(page) == 3
        if number == 5:
            # Reload: the same question, the same token, the first served-at time kept.
            shown_at = Participant.objects.get(pk=participant.pk).current_served_at
            token = page.locator("form.question").get_attribute("data-question")
            page.reload()
            assert question_number(page) == 5
            assert page.locator("form.question").get_attribute("data-question") == token
            kept = Participant.objects.get(pk=participant.pk)
            assert kept.current_position == 5
            assert kept.current_served_at == shown_at is not None
        if by_keyboard is None and number >= 3 and told is None:
            by_keyboard = answer_by_keyboard(page)
            continue
        answered = answer_as_told(page)
        if number == 8:
            # Back to the answered question (shown in place, with a URL of its own): the page
            # loads that URL, and the server sends the participant on.
            page.go_back()
            page.wait_for_url("**/question/9/")
            assert question_number(page) == 9
            assert "already answered question 8" in page.inner_text("main")
        if answered < total:
            assert question_number(page) == answered + 1

    assert checks_seen == 2
    assert page.url.endswith("/debrief/")
    # One request per question: each answer's acknowledgement brought the next question, shown
    # in place; pages were loaded only for question 1, the reload of 5 and Back from 9 (to 8,
    # which sends the participant on to 9).
    loaded = [int(m.group(1)) for d in documents if (m := QUESTION_URL.search(d))]
    assert loaded == [1, 5, 8, 9]
    participant.refresh_from_db()
    assert participant.step == Participant.Step.DEBRIEF
    assert_one_response_per_question(participant, total)
    keyed = Response.objects.get(participant=participant, assignment__position=by_keyboard)
    # "Photo 1" is whichever candidate the participant was shown first (orders are random).
    shown_first = keyed.assignment.display_order(study.k)[0]
    assert (keyed.selected_ranks, keyed.confidence) == ([shown_first], 2)
    assert not Response.objects.filter(participant=participant, attention_passed=False).exists()
    for response in Response.objects.filter(participant=participant):
        assert response.served_at <= response.answered_at

    page.get_by_role("button", name="Finish and return to Prolific").click()
    page.wait_for_url(f"{PROLIFIC_COMPLETE}**")
    assert page.url == f"{PROLIFIC_COMPLETE}?cc={study.completion_code}"
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    assert participant.completion_code == study.completion_code
    visits = {v.page: v for v in PageVisit.objects.filter(participant=participant)}
    assert set(visits) == {"consent", "demographics", "instructions", "debrief"}
    assert all(v.submitted_at and v.served_at <= v.submitted_at for v in visits.values())


def test_two_failed_attention_checks_end_with_the_failed_code(page):
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDFAIL0001")
    fast_forward_to_questions(page, study, participant)

    # Ordinary questions are answered through the services (test 1 covers them in the
    # browser); each attention check is answered wrongly on its page.
    for wrong in (1, 2):
        participant.refresh_from_db()
        while not current(participant).is_attention_check:
            participant = answer_current(participant).participant
        page.goto(f"/s/{study.slug}/")
        assert question_number(page) == participant.current_position
        photo, label = attention_instruction(page)
        answer_by_mouse(page, photos=[photo % study.k + 1], confidence=label)
        if wrong == 1:
            assert QUESTION_URL.search(page.url), "one failed check must not end the study"

    assert page.url.endswith("/done/")
    main = page.inner_text("main")
    assert "not answered as asked" in main
    assert page.locator("#completion-code").inner_text() == study.failed_attention_code
    link = page.get_by_role("link", name="Go to Prolific")
    assert link.get_attribute("href") == f"{PROLIFIC_COMPLETE}?cc={study.failed_attention_code}"

    participant.refresh_from_db()
    assert participant.status == Participant.Status.FAILED_ATTENTION
    assert participant.attention_failures == 2
    assert participant.completion_code == study.failed_attention_code
    second_check = (
        Assignment.objects.filter(participant=participant, is_attention_check=True)
        .order_by("position")
        .last()
    )
    assert_one_response_per_question(participant, second_check.position)
    assert Response.objects.filter(participant=participant, attention_passed=False).count() == 2

    # Going to a question again only shows the end page; nothing more is recorded.
    answered = Response.objects.filter(participant=participant).count()
    page.goto(f"/s/{study.slug}/question/1/")
    assert page.url.endswith("/done/")
    assert Response.objects.filter(participant=participant).count() == answered
    link = page.get_by_role("link", name="Go to Prolific")
    link.click()
    page.wait_for_url(f"{PROLIFIC_COMPLETE}**")
    assert page.url == f"{PROLIFIC_COMPLETE}?cc={study.failed_attention_code}"


def test_declining_consent_asks_to_return_the_study_with_the_no_consent_code(page):
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDNOCON001")

    page.get_by_role("radio", name="I do not agree").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/done/")
    assert "return the study" in page.inner_text("main")
    assert page.locator("#completion-code").inner_text() == study.no_consent_code
    href = page.get_by_role("link", name="Go to Prolific").get_attribute("href")
    assert href == f"{PROLIFIC_COMPLETE}?cc={study.no_consent_code}"

    participant.refresh_from_db()
    assert participant.status == Participant.Status.NO_CONSENT
    assert not participant.assignments.exists()
    # The decision stands: the consent page and a fresh arrival both lead back here.
    page.goto(f"/s/{study.slug}/consent/")
    assert page.url.endswith("/done/")
    arrive(page, study, pid="PIDNOCON001")
    assert page.url.endswith("/done/")
    assert Participant.objects.filter(study=study).count() == 1


def test_double_click_records_one_answer_and_a_second_tab_follows_the_current_question(
    page, context
):
    study = study_with_match_sets(per_method=5)
    participant = arrive(page, study, pid="PIDDOUBLE01")
    fast_forward_to_questions(page, study, participant)

    fill_answer(page, photos=[2], confidence="Fairly confident")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.get_by_role("button", name="Next question").dblclick()
    page.wait_for_url("**/question/2/")
    assert len(posts) == 1
    assert Response.objects.filter(participant=participant).count() == 1

    # A second tab opened on an old question is sent to the current one.
    second = context.new_page()
    second.goto(f"/s/{study.slug}/question/1/")
    assert second.url.endswith("/question/2/")
    assert "already answered question 1" in second.inner_text("main")

    # The second tab answers question 2; the first tab, still showing it, answers late.
    answer_as_told(second)
    assert second.url.endswith("/question/3/")
    first_answer = Response.objects.get(participant=participant, assignment__position=2)
    told = attention_instruction(page)
    late = [5] if told is None or told[0] != 5 else [4]
    fill_answer(page, photos=late, confidence="Not confident at all")
    page.get_by_role("button", name="Next question").click()
    page.wait_for_url("**/question/3/")
    assert "already answered question 2" in page.inner_text("main")

    first_answer.refresh_from_db()
    order = first_answer.assignment.display_order(study.k)
    assert first_answer.selected_ranks != [order[photo - 1] for photo in late]
    assert Response.objects.get(participant=participant, assignment__position=2) == first_answer
    assert_one_response_per_question(participant, 2)


def test_answer_submitted_twice_without_javascript_is_recorded_once(browser, live_server):
    """Without the script's guard, the same POST reaching the server twice keeps one answer."""
    study = study_with_match_sets(per_method=5)
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        participant = arrive(page, study, pid="PIDNOJS0001")
        fast_forward_to_questions(page, study, participant)
        statuses: list[int] = []

        def send_twice(route) -> None:
            if route.request.method != "POST":
                route.continue_()
                return
            for _ in range(2):  # as a double click or a network retry would
                response = route.fetch(max_redirects=0)
                statuses.append(response.status)
            route.fulfill(response=response)

        page.route("**/question/*/", send_twice)
        fill_answer(page, photos=[1], confidence="Very confident")
        page.get_by_role("button", name="Next question").click()
        page.wait_for_url("**/question/2/")
        assert statuses == [302, 302]
        assert "already answered question 1" in page.inner_text("main")
        assert_one_response_per_question(participant, 1)
        participant.refresh_from_db()
        assert participant.current_position == 2
    finally:
        context.close()


CONTRAST_SCRIPT = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  let checked = 0;
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    checked += 1;
    const [a, b] = [lum(parse(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return {checked, worst};
}
"""

UNLABELLED_SCRIPT = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter((el) => {
    const label = [...(el.labels || [])].map((l) => l.innerText.trim()).join('');
    return !label && !(el.getAttribute('aria-label') || '').trim() && !el.innerText?.trim();
  })
  .map((el) => el.outerHTML)
"""


def shoot(page, name: str) -> None:
    """A full-page screenshot outside the repository (never commit them)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT_DIR / f"{name}.png", full_page=True)


def sideways_overflow(page) -> int:
    """How far the page scrolls horizontally (0 when it fits the viewport)."""
    return page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


@pytest.mark.parametrize(
    ("name", "viewport"),
    [("phone", {"width": 375, "height": 812}), ("desktop", {"width": 1280, "height": 900})],
)
def test_pages_fit_the_screen_and_every_control_is_labelled(browser, live_server, name, viewport):
    study = study_with_match_sets(per_method=5, is_demo=True)
    context = browser.new_context(
        base_url=live_server.url,
        viewport=viewport,
        is_mobile=name == "phone",
        has_touch=name == "phone",
        device_scale_factor=2 if name == "phone" else 1,
    )
    try:
        page = context.new_page()
        participant = arrive(page, study, pid=f"PIDLAYOUT{name[:2].upper()}")
        steps = [
            lambda: services.participant_consent(participant=participant, consent=True),
            lambda: services.participant_demographics_save(
                participant=participant, gender="undisclosed", age_group="undisclosed"
            ),
            lambda: services.participant_start_questions(participant=participant),
        ]
        for advance in [*steps, None]:
            # Consent, demographics, instructions and the first question, in turn.
            assert sideways_overflow(page) <= 0, f"{page.url} scrolls sideways on {name}"
            assert page.evaluate(UNLABELLED_SCRIPT) == []
            contrast = page.evaluate(CONTRAST_SCRIPT)
            assert contrast["checked"] > 3
            assert contrast["worst"] == [], f"text below 4.5:1 contrast on {page.url}"
            if page.url.endswith("/instructions/"):
                shoot(page, f"instructions-{name}")
            if advance is not None:
                advance()
                page.goto(f"/s/{study.slug}/")
        assert page.url.endswith("/question/1/")
        assert all(w > 0 for w in images_loaded(page))
        for rank in range(1, study.k + 1):
            assert page.get_by_role("checkbox", name=f"Photo {rank}", exact=True).count() == 1
        assert page.get_by_role("checkbox", name="None of these show the same person").count()
        for label in Confidence.labels:
            assert page.get_by_role("radio", name=label, exact=True).count() == 1

        # Touch targets: every choice is at least 44 px tall (WCAG 2.5.5 / Apple HIG).
        heights = page.eval_on_selector_all(
            "label.choice, label.candidate, button",
            "els => els.map(e => e.getBoundingClientRect().height)",
        )
        assert min(heights) >= 44

        # The client-side check explains a missing answer instead of submitting.
        page.get_by_role("button", name="Next question").click()
        assert "Select at least one photo" in page.locator(".status").inner_text()
        assert page.url.endswith("/question/1/")

        shoot(page, f"question-{name}")
    finally:
        context.close()
