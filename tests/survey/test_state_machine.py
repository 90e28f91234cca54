"""A hypothesis state machine over the real participant flow, through Django's test client.

A few people arrive from Prolific, in one or more browsers each, and in any order answer (as a
plain form or as the page's script), double-submit, reload, go back, answer from a second tab or
a stale page, decline, finish and come back with the same PROLIFIC_PID. After every step the
machine checks the flow's invariants against the database:

- exactly one Response per (participant, question), and it is the first answer sent;
- a participant's step and question position only move forward;
- the COMPLETED code is issued iff every question is answered and the status is completed;
- each match set is answered by the same number of participants ±1 (per FVR method);
- nothing is randomised on GET: a question page is identical on every load (candidate order too).
"""

import re
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.db.models import Count
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from survey.flow import PAGE_SEQUENCE
from survey.models import Assignment, Participant, Response, pseudonymise
from tests.factories import prolific_id, study_with_match_sets
from tests.survey.helpers import browser_participant_id
from tests.survey.http_helpers import JSON

pytestmark = pytest.mark.django_db

Step = Participant.Step
STEP_ORDER = [*PAGE_SEQUENCE, Step.DONE]
PEOPLE = 3
K = 5
STUDY_ID = prolific_id("STUDYSM001")
# (selected ranks, none of these, confidence): valid and invalid shapes alike.
ANSWERS = st.tuples(
    st.lists(st.integers(1, K), unique=True, max_size=K), st.booleans(), st.integers(0, 6)
)
PERSON = st.integers(0, PEOPLE - 1)
INDEX = st.integers(0, 3)  # picks among a person's browsers, modulo how many there are
TAB = st.integers(0, 9)  # picks among all open tabs, newest first


@dataclass
class Tab:
    """A question page one of a person's tabs has loaded (and may submit later)."""

    browser: int
    position: int
    token: str


@dataclass
class Person:
    pid: str
    session: str
    browsers: list[Client] = field(default_factory=list)


def is_valid(answer: tuple[list[int], bool, int]) -> bool:
    selected, none, confidence = answer
    return 1 <= confidence <= 5 and bool(selected) != none


def question_fingerprint(html: str) -> tuple:
    """What a question page shows: its token, the images and the candidates in their order."""
    token = re.search(r'name="question" value="([0-9a-f-]{36})"', html)
    return (
        token.group(1) if token else None,
        tuple(re.findall(r'<img src="([^"]+)"', html)),
        tuple(re.findall(r'name="selected" value="(\d+)"', html)),
        tuple(re.findall(r'id="attention">(.*?)</p>', html, flags=re.S)),
    )


class ParticipantFlow(RuleBasedStateMachine):
    """People taking one study over HTTP; the database is checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        # Each example runs in its own savepoint, rolled back in teardown(): a clean study.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.study = study_with_match_sets(
            per_method=2, questions_per_method=1, prolific_study_id=STUDY_ID
        )
        self.people = [
            Person(pid=prolific_id(f"PIDSM{n:05d}"), session=prolific_id(f"SESSSM{n:05d}"))
            for n in range(PEOPLE)
        ]
        self.first_answers: dict[tuple[int, int], tuple[list[int], bool, int]] = {}
        self.progress_seen: dict[int, tuple[int, int]] = {}
        self.pages_seen: dict[tuple[int, int], tuple] = {}
        self.tabs: list[tuple[Person, Tab]] = []  # every question page opened, in order

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    # Helpers ------------------------------------------------------------------------------

    def url(self, name: str, **kwargs: object) -> str:
        return reverse(f"survey:{name}", kwargs={"slug": self.study.slug, **kwargs})

    def participant(self, person: Person) -> Participant | None:
        return Participant.objects.filter(
            study=self.study, pseudonym=pseudonymise(person.pid)
        ).first()

    def browser(self, person: Person, index: int) -> Client:
        if not person.browsers:
            person.browsers.append(Client())
        return person.browsers[index % len(person.browsers)]

    def snapshot(self) -> tuple:
        """Everything a refused or read-only request must leave as it was."""
        participants = Participant.objects.filter(study=self.study).order_by("pk")
        return (
            list(participants.values_list("pk", "step", "status", "current_position")),
            list(
                Response.objects.filter(participant__study=self.study)
                .order_by("pk")
                .values_list("pk", "selected_ranks", "none_selected", "confidence")
            ),
            Assignment.objects.filter(participant__study=self.study).count(),
        )

    def load_question(self, person: Person, browser: int) -> Tab | None:
        """Open the study in a browser (as a new tab would); keep the tab if it is a question."""
        client = self.browser(person, browser)
        response = client.get(self.url("entry"))
        if response.status_code != 302:
            return None
        page = client.get(response["Location"])
        if page.status_code != 200 or "/question/" not in response["Location"]:
            return None
        position = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
        index = person.browsers.index(client)  # stays this browser when more are opened
        tab = Tab(browser=index, position=position, token=self.check_page(person, page))
        self.tabs.append((person, tab))
        return tab

    def check_page(self, person: Person, page) -> str:
        """A question page must look the same on every load; return its question token."""
        p = self.participant(person)
        html = page.content.decode()
        fingerprint = question_fingerprint(html)
        assert fingerprint[0], "a question page without its question token"
        position = Assignment.objects.get(token=fingerprint[0]).position
        key = (p.pk, position)
        assert self.pages_seen.setdefault(key, fingerprint) == fingerprint, (
            f"question {position} changed between loads"
        )
        return fingerprint[0]

    def pick_tab(self, index: int) -> tuple[Person, Tab]:
        """One of all the open tabs, newest first (index 0 is the last one opened)."""
        return self.tabs[-1 - index % len(self.tabs)]

    def instructed(self, token: str, answer: tuple) -> tuple:
        """Attention checks are answered as instructed, so that nobody fails them here."""
        assignment = Assignment.objects.get(token=token)
        if assignment.is_attention_check and is_valid(answer):
            photo = assignment.photo_number(assignment.attention_rank, self.study.k)
            return [photo], False, assignment.attention_confidence
        return answer

    def post_answer(self, person: Person, tab: Tab, answer: tuple, *, script: bool):
        """Post the tab's form, as a browser without JavaScript or as the page's script."""
        client = self.browser(person, tab.browser)
        selected, none, confidence = answer
        data = {"question": tab.token, "selected": [str(r) for r in selected]}
        if none:
            data["none_of_these"] = "on"
        data["confidence"] = str(confidence)
        headers = JSON if script else {}
        return client.post(self.url("question", position=tab.position), data, **headers)

    def send_answer(self, person: Person, tab: Tab, answer: tuple, *, script: bool) -> None:
        """Submit from a tab and check the outcome against the state before the request."""
        p = self.participant(person)
        answer = self.instructed(tab.token, answer)
        current = p.step == Step.QUESTIONS and not p.is_finished
        at_current = current and tab.position == p.current_position
        before = self.snapshot()
        response = self.post_answer(person, tab, answer, script=script)
        creates = at_current and is_valid(answer)
        # The one answer endpoint: a refused answer is a 400 (form or JSON); otherwise a
        # redirect, or for the script where to go next (recorded, repeated or stale alike).
        accepted = 200 if script else 302
        expected = 400 if at_current and not creates else accepted
        assert response.status_code == expected, (response.status_code, expected, answer)
        if creates:
            stored = Response.objects.get(assignment__token=tab.token)
            # Photo numbers are posted; the stored ranks follow the question's display order.
            order = stored.assignment.display_order(self.study.k)
            ranks = sorted(order[photo - 1] for photo in answer[0])
            assert (stored.selected_ranks, stored.none_selected, stored.confidence) == (
                ranks,
                answer[1],
                answer[2],
            )
            self.first_answers[p.pk, tab.position] = (ranks, answer[1], answer[2])
        else:
            assert self.snapshot() == before, "a refused answer changed the database"

    # Rules --------------------------------------------------------------------------------

    @initialize()
    def first_arrivals(self) -> None:
        """The first person arrives and reaches the questions; the others come when they do."""
        self.arrive(0, new_browser=False, same_session=True)
        for _ in range(3):
            self.next_step(self.people[0], 0)
        self.load_question(self.people[0], 0)

    @rule(who=PERSON, new_browser=st.booleans(), same_session=st.booleans())
    def arrive(self, who: int, new_browser: bool, same_session: bool) -> None:
        """Arrive (or come back) from the Prolific link, in this or a new browser."""
        person = self.people[who]
        if new_browser and len(person.browsers) < 3:
            person.browsers.append(Client())
        client = self.browser(person, len(person.browsers) - 1)
        known = self.participant(person)
        session = (
            person.session if same_session or known is None else prolific_id(person.session + "X")
        )
        params = {"PROLIFIC_PID": person.pid, "STUDY_ID": STUDY_ID, "SESSION_ID": session}
        before = self.snapshot()
        response = client.get(self.url("entry"), params)
        assert response.status_code == 302
        assert person.pid not in response["Location"]
        p = self.participant(person)
        assert Participant.objects.filter(study=self.study, pseudonym=p.pseudonym).count() == 1
        if known is not None:
            assert p.pk == known.pk
            assert self.snapshot() == before, "re-entry changed the participation"

    @rule(who=PERSON, browser=INDEX, steps=st.integers(1, 8))
    def progress(self, who: int, browser: int, steps: int) -> None:
        """Do what the current pages ask for, `steps` times: agree, fill in, answer, finish."""
        person = self.people[who]
        for _ in range(steps):
            p = self.participant(person)
            self.next_step(person, browser)
            if p is None or p.step == Step.DONE:
                break

    def next_step(self, person: Person, browser: int) -> None:
        client = self.browser(person, browser)
        p = self.participant(person)
        if p is None:
            response = client.get(self.url("consent"))
            assert response.status_code == 403  # no participant in this browser session
            return
        if p.step == Step.CONSENT:
            response = client.post(self.url("consent"), {"decision": "agree"})
        elif p.step == Step.DEMOGRAPHICS:
            response = client.post(
                self.url("demographics"), {"gender": "undisclosed", "age_group": "30-39"}
            )
        elif p.step == Step.INSTRUCTIONS:
            response = client.post(self.url("instructions"))
        elif p.step == Step.QUESTIONS:
            tab = self.load_question(person, browser)
            if tab is None:  # this browser was never signed in: the page is refused
                assert client.get(self.url("question", position=1)).status_code == 403
                return
            self.send_answer(person, tab, ([1], False, 3), script=False)
            return
        elif p.step == Step.DEBRIEF:
            response = client.post(self.url("debrief"))
        else:
            response = client.get(self.url("done"))
            if response.status_code == 403:  # a browser this person was never let in with
                assert browser_participant_id(client, self.study) is None
            elif p.status == Participant.Status.COMPLETED:
                assert response["Location"].endswith(f"?cc={self.study.completion_code}")
            return
        if response.status_code == 403:  # a browser without this person's session
            assert browser_participant_id(client, self.study) is None
            return
        assert response.status_code == 302, response.status_code
        after = self.participant(person)
        assert STEP_ORDER.index(after.step) == STEP_ORDER.index(p.step) + 1

    @rule(browser=INDEX)
    def decline(self, browser: int) -> None:
        """The last person declines consent (a stale form if they are past it: no change)."""
        person = self.people[-1]
        p = self.participant(person)
        if p is None:
            return
        before = self.snapshot()
        response = self.browser(person, browser).post(self.url("consent"), {"decision": "decline"})
        after = self.participant(person)
        if response.status_code == 403:
            assert self.snapshot() == before
        elif p.step == Step.CONSENT:
            assert after.status == Participant.Status.NO_CONSENT
            assert after.completion_code == self.study.no_consent_code
        else:
            assert response.status_code == 302
            assert self.snapshot() == before, "a stale consent form changed the participation"

    @rule(who=PERSON, browser=INDEX)
    def open_tab(self, who: int, browser: int) -> None:
        """Open the study in another tab of a browser: the current page, rebuilt from storage."""
        person = self.people[who]
        if self.participant(person) is None:
            return
        before = self.snapshot()
        self.load_question(person, browser)
        assert self.snapshot()[1:] == before[1:], "a GET assigned or recorded something"

    @precondition(lambda self: bool(self.tabs))
    @rule(tab=TAB)
    def reload(self, tab: int) -> None:
        """Reload a tab: the same question page, or the current one if it was answered."""
        person, t = self.pick_tab(tab)
        p = self.participant(person)
        before = self.snapshot()
        page = self.browser(person, t.browser).get(self.url("question", position=t.position))
        if p.step == Step.QUESTIONS and t.position == p.current_position:
            assert page.status_code == 200
            assert self.check_page(person, page) == t.token
        else:
            assert page.status_code == 302
        assert self.snapshot()[1:] == before[1:], "a reload assigned or recorded something"

    @rule(who=PERSON, browser=INDEX, answer=ANSWERS, script=st.booleans())
    def answer_now(self, who: int, browser: int, answer: tuple, script: bool) -> None:
        """Open the current question and answer it (validly or not, by form or API)."""
        person = self.people[who]
        if self.participant(person) is None:
            return
        tab = self.load_question(person, browser)
        if tab is not None:
            self.send_answer(person, tab, answer, script=script)

    @precondition(lambda self: bool(self.tabs))
    @rule(tab=TAB, answer=ANSWERS, script=st.booleans())
    def answer_from_tab(self, tab: int, answer: tuple, script: bool) -> None:
        """Submit an answer from a tab: current, double-submitted, stale or from another tab."""
        person, t = self.pick_tab(tab)
        self.send_answer(person, t, answer, script=script)

    @rule(who=PERSON, browser=INDEX, page=st.integers(0, 8))
    def back(self, who: int, browser: int, page: int) -> None:
        """The back button: an earlier page (or a later one) is never served as current."""
        person = self.people[who]
        p = self.participant(person)
        if p is None or p.step == Step.DONE:
            return
        names = ["consent", "demographics", "instructions", "debrief"]
        if page < len(names):
            target = self.url(names[page])
            is_current = p.step == names[page]  # the URL names are the steps' values
        else:
            position = page - len(names) + 1
            target = self.url("question", position=position)
            is_current = p.step == Step.QUESTIONS and p.current_position == position
        before = self.snapshot()
        response = self.browser(person, browser).get(target)
        if response.status_code == 403:  # a browser without this person's session
            return
        if is_current:
            assert response.status_code == 200
        else:
            assert response.status_code == 302
        assert self.snapshot()[1:] == before[1:], "going back assigned or recorded something"

    # Invariants ---------------------------------------------------------------------------

    @invariant()
    def one_response_per_question_and_the_first_stands(self) -> None:
        responses = Response.objects.filter(participant__study=self.study)
        doubled = responses.values("assignment").annotate(n=Count("pk")).filter(n__gt=1)
        assert not doubled.exists()
        stored = {
            (r.participant_id, r.assignment.position): (
                r.selected_ranks,
                r.none_selected,
                r.confidence,
            )
            for r in responses.select_related("assignment")
        }
        assert stored == self.first_answers
        assert all(r.participant_id == r.assignment.participant_id for r in responses)

    @invariant()
    def progress_only_moves_forward(self) -> None:
        for p in Participant.objects.filter(study=self.study):
            now = (STEP_ORDER.index(p.step), p.current_position)
            assert now >= self.progress_seen.get(p.pk, now), f"{p} went back"
            self.progress_seen[p.pk] = now

    @invariant()
    def completion_code_iff_all_answered_and_completed(self) -> None:
        total = self.study.question_count
        for p in Participant.objects.filter(study=self.study):
            answered = Response.objects.filter(participant=p).count()
            completed = p.status == Participant.Status.COMPLETED
            assert (p.completion_code == self.study.completion_code) == completed
            if completed:
                assert p.step == Step.DONE
                assert answered == total == p.assignments.count()
            if p.status == Participant.Status.ACTIVE:
                assert p.completion_code == ""
            if p.status == Participant.Status.NO_CONSENT:
                assert p.completion_code == self.study.no_consent_code
                assert answered == 0

    @invariant()
    def assignment_is_balanced(self) -> None:
        counted = Participant.objects.filter(study=self.study).counted_for_balance()
        for method in self.study.methods:
            counts = [
                ms.assignments.filter(is_attention_check=False, participant__in=counted).count()
                for ms in self.study.match_sets.filter(method=method)
            ]
            assert max(counts) - min(counts) <= 1, (method, counts)


def test_participant_flow_state_machine():
    run_state_machine_as_test(
        ParticipantFlow,
        settings=settings(
            max_examples=10,
            stateful_step_count=30,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.slow
def test_participant_flow_state_machine_long_runs():
    run_state_machine_as_test(
        ParticipantFlow,
        settings=settings(
            max_examples=30,
            stateful_step_count=60,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
