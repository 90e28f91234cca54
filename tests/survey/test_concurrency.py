"""Concurrency on PostgreSQL: simultaneous arrivals and duplicate answers, one connection each."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from survey import browser
from survey.models import Assignment, Participant, Response
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# PostgreSQL's default max_connections is 100: keep headroom for the test's own connection.
MAX_CONNECTIONS = 60


def run_at_once(count: int, work) -> list:
    """Start `count` threads that wait on one barrier and then call work(i) together."""
    barrier = threading.Barrier(count)
    gate = threading.BoundedSemaphore(MAX_CONNECTIONS)
    results: list = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        with gate:
            try:
                results[i] = work(i)
            finally:
                connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def arrive_and_start(slug: str, pid: str) -> int:
    client = Client()
    entry = client.get(
        reverse("survey:entry", kwargs={"slug": slug}),
        {
            "PROLIFIC_PID": prolific_id(pid),
            "STUDY_ID": STUDY_ID,
            "SESSION_ID": prolific_id(f"S{pid}"),
        },
    )
    assert entry.status_code == 302, entry.content
    client.post(reverse("survey:consent", kwargs={"slug": slug}), {"decision": "agree"})
    client.post(
        reverse("survey:demographics", kwargs={"slug": slug}),
        {"gender": "undisclosed", "age_group": "undisclosed"},
    )
    done = client.post(reverse("survey:instructions", kwargs={"slug": slug}))
    assert done.status_code == 302
    return done.status_code


def test_400_simultaneous_arrivals_one_participant_per_pid_and_balanced():
    study = study_with_match_sets(per_method=10)
    # 400 arrivals of 320 people: 80 of them arrive twice at the same moment (double click,
    # second tab), which must not create a second participation.
    pids = [f"PIDCONC{i:05d}" for i in range(320)] + [f"PIDCONC{i:05d}" for i in range(80)]
    results = run_at_once(len(pids), lambda i: arrive_and_start(study.slug, pids[i]))
    assert results.count(302) == 400

    per_pid = Counter(
        Participant.objects.filter(study=study).values_list("prolific_pid", flat=True)
    )
    assert len(per_pid) == 320
    assert set(per_pid.values()) == {1}
    questions = Counter(
        Assignment.objects.filter(participant__study=study).values_list("participant_id", flat=True)
    )
    assert set(questions.values()) == {study.question_count}
    counts = Counter(
        Assignment.objects.filter(participant__study=study, is_attention_check=False).values_list(
            "match_set_id", flat=True
        )
    )
    assert len(counts) == 40
    spread = max(counts.values()) - min(counts.values())
    assert spread <= 1, counts
    assert sum(counts.values()) == 320 * 20


def test_20_threads_posting_the_same_answer_leave_one_response():
    study = study_with_match_sets(per_method=5)
    client = Client()
    pid = "PIDDOUBLE01"
    assert arrive_and_start(study.slug, pid) == 302
    # Reuse that participant's signed cookie in 20 independent clients.
    client.get(
        reverse("survey:entry", kwargs={"slug": study.slug}),
        {
            "PROLIFIC_PID": prolific_id(pid),
            "STUDY_ID": STUDY_ID,
            "SESSION_ID": prolific_id(f"S{pid}"),
        },
    )
    participant = Participant.objects.get(prolific_pid=prolific_id(pid))
    question = Assignment.objects.get(participant=participant, position=1)
    cookie = client.cookies[browser.COOKIE].value
    url = reverse("survey:question", kwargs={"slug": study.slug, "position": 1})
    body = {"question": str(question.token), "selected": ["2"], "confidence": "4"}

    def post(_i: int) -> tuple[int, int]:
        c = Client()
        c.cookies[browser.COOKIE] = cookie
        reply = c.post(url, body, HTTP_ACCEPT="application/json")
        return reply.status_code, reply.json()["question"]["number"]

    replies = run_at_once(20, post)
    # Every copy is acknowledged and sent on to question 2; one answer is stored.
    assert Counter(replies) == {(200, 2): 20}
    assert Response.objects.filter(participant=participant).count() == 1
    participant.refresh_from_db()
    assert participant.current_position == 2


def test_arrivals_and_question_assignment_do_not_wait_for_the_study_row():
    """With the study row locked elsewhere (as while opening or closing the study, or while
    the next batch of assignment slots is decided), an arrival still gets through entry,
    consent, demographics and question assignment: arrivals claim slots with SKIP LOCKED and
    never queue on that one row."""
    from django.db import transaction

    from survey.services.locks import locked_study

    study = study_with_match_sets(per_method=10)
    arrive_and_start(study.slug, "PIDFIRSTSLOT")  # decides the first batch of slots
    locked, release = threading.Event(), threading.Event()

    def hold_study_row() -> None:
        try:
            with transaction.atomic():
                locked_study(study.pk)
                locked.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_study_row)
    holder.start()
    assert locked.wait(timeout=10)
    finished: list[int] = []

    def arrive() -> None:
        try:
            finished.append(arrive_and_start(study.slug, "PIDWHILELOCK"))
        finally:
            connection.close()

    arrival = threading.Thread(target=arrive)
    arrival.start()
    arrival.join(timeout=20)
    still_waiting = arrival.is_alive()
    release.set()
    holder.join()
    arrival.join()
    assert not still_waiting, "the arrival waited for the study row's lock"
    assert finished == [302]
    p = Participant.objects.get(study=study, prolific_pid=prolific_id("PIDWHILELOCK"))
    assert p.step == Participant.Step.QUESTIONS
    assert p.assignments.count() == study.question_count
