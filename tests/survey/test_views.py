"""The participant pages over HTTP: the path, resumption and every kind of bad input."""

import pytest
from django.db import connection
from django.template.response import TemplateResponse
from django.test import Client

from survey import faces, services
from survey.models import Assignment, Participant, RefusedRequest, Response
from survey.questions import questions_clear
from survey.studies import studies_forget
from tests.factories import STUDY_ID, prolific_id, study_with_match_sets
from tests.survey.http_helpers import JSON, PARAMS, answer_payload, at_questions, url

pytestmark = pytest.mark.django_db


def test_entry_moves_prolific_ids_out_of_the_url():
    study = study_with_match_sets()
    client = Client()
    response = client.get(url("entry", study), PARAMS)
    assert response.status_code == 302
    assert response["Location"] == url("consent", study)
    assert PARAMS["PROLIFIC_PID"] not in response["Location"]
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert page["Cache-Control"].startswith("max-age=0") or "no-cache" in page["Cache-Control"]
    assert b"Do you agree to take part?" in page.content


def test_reentry_resumes_at_the_current_step_in_a_new_browser():
    study = study_with_match_sets()
    p = at_questions(Client(), study)
    other_browser = Client()
    response = other_browser.get(url("entry", study), PARAMS)
    assert response["Location"] == url("question", study, position=1)
    assert Participant.objects.filter(study=study).count() == 1
    assert p.assignments.count() == study.question_count


def test_full_path_over_http_ends_on_prolific_with_completion_code():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    for position in range(1, study.question_count + 1):
        page = client.get(url("question", study, position=position))
        assert page.status_code == 200
        p.refresh_from_db()
        response = client.post(url("question", study, position=position), answer_payload(p))
        assert response.status_code == 302, response.content
    response = client.post(url("debrief", study), follow=False)
    prolific = f"https://app.prolific.com/submissions/complete?cc={study.completion_code}"
    assert response["Location"] == prolific  # straight back, without the done page
    assert client.get(url("done", study))["Location"] == prolific  # which says the same later
    p.refresh_from_db()
    assert p.status == Participant.Status.COMPLETED
    assert Response.objects.filter(participant=p).count() == study.question_count
    assert p.visits.filter(submitted_at__isnull=False).count() == 4


def test_back_to_an_answered_question_shows_the_current_one():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    client.post(url("question", study, position=1), answer_payload(p))
    response = client.get(url("question", study, position=1), follow=True)
    assert response.redirect_chain[-1][0] == url("question", study, position=2)
    assert b"already answered question 1" in response.content
    # Skipping ahead is redirected back too.
    ahead = client.get(url("question", study, position=5))
    assert ahead["Location"] == url("question", study, position=2)


def test_double_submit_of_the_form_keeps_the_first_answer():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    first = answer_payload(p, selected=["2"], confidence="5")
    client.post(url("question", study, position=1), first)
    again = client.post(url("question", study, position=1), {**first, "selected": ["4"]})
    assert again.status_code == 302
    stored = Response.objects.get(participant=p)
    assert stored.selected_ranks == [stored.assignment.display_order(study.k)[1]]  # photo 2
    assert stored.confidence == 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"confidence": "0"}, b"Confidence must be a whole number from 1 to 5"),
        ({"confidence": "6"}, b"Confidence must be a whole number from 1 to 5"),
        ({"confidence": "3.0"}, b"Confidence must be a whole number from 1 to 5"),
        ({"confidence": "\uff13"}, b"Confidence must be a whole number from 1 to 5"),
        ({"confidence": ""}, b"Please rate how confident you are"),
        ({"selected": ["6"]}, b"Selected photos must be numbered 1 to 5"),
        ({"selected": ["0"]}, b"Selected photos must be numbered 1 to 5"),
        ({"selected": ["1.0"]}, b"Selected photos must be numbered 1 to 5"),
        ({"selected": ["1", "1"]}, b"Each photo can be selected only once"),
        ({"selected": []}, b"Select at least one photo"),
        ({"selected": ["1"], "none_of_these": "on"}, b"not both"),
        ({"question": "not-a-uuid"}, b"Please check your answer"),
    ],
)
def test_bad_answers_get_400_with_a_message_and_change_nothing(overrides, message):
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    payload = answer_payload(p, **overrides)
    if overrides.get("confidence") == "":
        payload.pop("confidence")
    response = client.post(url("question", study, position=1), payload)
    assert response.status_code == 400
    assert message in response.content
    assert not Response.objects.exists()
    p.refresh_from_db()
    assert p.current_position == 1


def test_a_submissions_error_page_is_rendered_after_its_transaction(monkeypatch):
    """A form posted with errors is answered with its page again (400), rendered once the
    submission's transaction (which holds the participant's row lock) has ended."""
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    outside = len(connection.atomic_blocks)  # the test's own transaction
    rendered_in = []
    render = TemplateResponse.rendered_content

    def rendered_content(self):
        rendered_in.append(len(connection.atomic_blocks) - outside)
        return render.fget(self)

    monkeypatch.setattr(TemplateResponse, "rendered_content", property(rendered_content))
    payload = answer_payload(p)
    payload.pop("confidence")
    response = client.post(url("question", study, position=1), payload)
    assert response.status_code == 400
    assert services.CONFIDENCE_MISSING in response.content.decode()
    assert rendered_in == [0]  # one page, rendered with no transaction of the view open


def test_another_participants_question_is_refused_with_403():
    study = study_with_match_sets()
    owner = at_questions(Client(), study)
    intruder_client = Client()
    at_questions(
        intruder_client,
        study,
        {
            "PROLIFIC_PID": prolific_id("PIDINTRUDE1"),
            "STUDY_ID": STUDY_ID,
            "SESSION_ID": prolific_id("SESSINTR01"),
        },
    )
    response = intruder_client.post(url("question", study, position=1), answer_payload(owner))
    assert response.status_code == 403
    assert b"does not belong to you" in response.content
    assert not Response.objects.exists()
    assert RefusedRequest.objects.filter(reason="not_your_question").count() == 1


def test_answer_after_completion_is_refused():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    token = str(Assignment.objects.get(participant=p, position=2).token)
    Participant.objects.filter(pk=p.pk).update(
        status=Participant.Status.COMPLETED, step=Participant.Step.DONE
    )
    before = Response.objects.count()
    response = client.post(url("question", study, position=2), {"question": token})
    assert response.status_code == 302  # the page itself sends a finished participant to the end
    script = client.post(
        url("question", study, position=2),
        {"question": token, "selected": ["1"], "confidence": "3"},
        **JSON,
    )
    assert script.status_code == 200  # and the page's script is sent there too
    assert script.json()["next"] == url("done", study)
    assert script.json()["question"] is None
    assert Response.objects.count() == before
    assert RefusedRequest.objects.filter(reason="answer_refused").count() == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, b"needs your Prolific details"),
        ({"STUDY_ID": STUDY_ID, "SESSION_ID": prolific_id("SESS000001")}, b"missing PROLIFIC_PID"),
        (
            {"PROLIFIC_PID": prolific_id("PID0000001"), "SESSION_ID": prolific_id("SESS000001")},
            b"missing STUDY_ID",
        ),
        ({"PROLIFIC_PID": prolific_id("PID0000001"), "STUDY_ID": STUDY_ID}, b"missing SESSION_ID"),
        (
            {
                "PROLIFIC_PID": "<b>x</b>",
                "STUDY_ID": STUDY_ID,
                "SESSION_ID": prolific_id("SESS000001"),
            },
            b"PROLIFIC_PID is not a valid",
        ),
        (
            {
                "PROLIFIC_PID": prolific_id("PID0000001"),
                "STUDY_ID": prolific_id("WRONGSTUDY"),
                "SESSION_ID": prolific_id("SESS000001"),
            },
            b"STUDY_ID does not belong",
        ),
    ],
)
def test_bad_prolific_parameters_get_400_and_create_nothing(params, message):
    study = study_with_match_sets(prolific_study_id=STUDY_ID)
    response = Client().get(url("entry", study), params, follow=True)
    if params:  # shown at a URL without the IDs
        assert response.redirect_chain == [(url("refused", study), 302)]
    assert response.status_code == 400
    assert message in response.content
    assert b"<b>x</b>" not in response.content  # never echoed back as markup
    assert not Participant.objects.exists()


def test_closed_study_says_so_with_403():
    study = study_with_match_sets(status="closed")
    response = Client().get(url("entry", study), PARAMS, follow=True)
    assert response.redirect_chain == [(url("refused", study), 302)]
    assert response.status_code == 403
    assert b"not open" in response.content
    assert not Participant.objects.exists()


def test_a_refusal_page_without_its_reason_still_says_what_to_do():
    study = study_with_match_sets(status="closed")
    client = Client()
    client.get(url("entry", study), PARAMS)
    assert b"not open" in client.get(url("refused", study)).content  # a reload: same reason
    for cookie in ("garbage", ""):
        client.cookies["fvr_refusal"] = cookie
        response = client.get(url("refused", study))
        assert response.status_code == 400
        assert b"open the study again from your Prolific link" in response.content
    assert Client().get(url("refused", study)).status_code == 400
    assert Client().get("/s/no-such-study/refused/").status_code == 404


def test_pages_without_a_participant_session_are_refused():
    study = study_with_match_sets()
    response = Client().get(url("question", study, position=1))
    assert response.status_code == 403
    assert b"Prolific link" in response.content


def test_declining_consent_shows_the_no_consent_code():
    study = study_with_match_sets()
    client = Client()
    client.get(url("entry", study), PARAMS)
    response = client.post(url("consent", study), {"decision": "decline"}, follow=True)
    assert response.status_code == 200
    assert study.no_consent_code.encode() in response.content
    assert b"return the study" in response.content
    assert Participant.objects.get().status == Participant.Status.NO_CONSENT


def test_a_session_id_already_used_by_another_pid_is_refused():
    study = study_with_match_sets()
    Client().get(url("entry", study), PARAMS)
    reused = {**PARAMS, "PROLIFIC_PID": prolific_id("PIDOTHER001")}
    response = Client().get(url("entry", study), reused, follow=True)
    assert response.status_code == 400
    assert b"SESSION_ID is already in use" in response.content
    assert Participant.objects.filter(study=study).count() == 1
    assert RefusedRequest.objects.filter(reason="entry_refused").exists()


def test_participant_pages_send_a_strict_content_security_policy():
    study = study_with_match_sets()
    client = Client()
    client.get(url("entry", study), PARAMS)
    page = client.get(url("consent", study))
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "no-store" in page["Cache-Control"]
    assert b"style=" not in page.content  # inline styles would break the policy


def test_the_other_pages_keep_to_their_query_budget(django_assert_max_num_queries):
    """Consent, demographics, instructions and debrief on a first visit: the participant and
    the visit stored as one INSERT … ON CONFLICT DO NOTHING — 2, against 10–11 with
    get_or_create and the study read with each participant. The process reads the study and
    its question count once (survey.studies): the first page pays for them."""
    study = study_with_match_sets()
    client = Client()
    client.get(url("entry", study), PARAMS)
    p = Participant.objects.get(study=study)
    studies_forget()
    with django_assert_max_num_queries(4):
        page = client.get(url("consent", study))
    assert page.status_code == 200
    assert f"you will see {study.question_count} images".encode() in page.content
    first = p.visits.get(page=Participant.Step.CONSENT).served_at
    client.get(url("consent", study))  # a reload keeps the first time, and adds no row
    assert p.visits.get(page=Participant.Step.CONSENT).served_at == first
    client.post(url("consent", study), {"decision": "agree"})
    with django_assert_max_num_queries(2):
        assert client.get(url("demographics", study)).status_code == 200
    client.post(url("demographics", study), {"gender": "undisclosed", "age_group": "undisclosed"})
    with django_assert_max_num_queries(2):
        page = client.get(url("instructions", study))
    assert f"There are {study.question_count} questions".encode() in page.content
    assert p.visits.count() == 3


def test_a_visit_stored_meanwhile_keeps_its_first_time():
    """A second tab (or a reload) stored the visit first: the insert does nothing (ON CONFLICT
    DO NOTHING), and the first time stands."""
    from datetime import timedelta

    from django.utils import timezone

    study = study_with_match_sets()
    client = Client()
    client.get(url("entry", study), PARAMS)
    p = Participant.objects.get(study=study)
    earlier = timezone.now() - timedelta(minutes=5)
    p.visits.create(page=Participant.Step.CONSENT, served_at=earlier)
    services.page_visit_record(participant=p, page=Participant.Step.CONSENT)
    assert p.visits.get(page=Participant.Step.CONSENT).served_at == earlier
    assert p.visits.count() == 1


def test_question_page_and_answer_keep_to_their_query_budget(
    django_assert_max_num_queries, monkeypatch
):
    """The requests every participant makes per question, ~100 times a second at load:
    a regression here is a regression in capacity (benchmarks/load/profile_flow.py)."""
    monkeypatch.setattr(faces, "_kept", {})  # no candidates seen yet in this process
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    client.post(url("question", study, position=1), answer_payload(p))
    p.refresh_from_db()
    questions_clear()  # as in a process that has not seen this participant's questions yet
    # The participant (no session row: survey.browser; the study kept: survey.studies); all
    # their questions with their match sets, once per process (survey.questions); the
    # candidates of the next one, which this process has not seen yet (survey.faces); when
    # it was shown (on the participant row).
    with django_assert_max_num_queries(4):
        page = client.get(url("question", study, position=2))
    assert page.status_code == 200
    assert b'name="question"' in page.content
    with django_assert_max_num_queries(1):  # a reload: the participant; the rest is kept
        client.get(url("question", study, position=2))
    # One transaction: the participant read under its lock (once: survey.browser), the
    # insert, the update: 3, and the transaction's SAVEPOINT and RELEASE here, inside the
    # test's own transaction (in a server it is BEGIN and COMMIT, which Django does not
    # count) — the minimal answer view's 2 and one more.
    payload = answer_payload(p)
    with django_assert_max_num_queries(5):
        answered = client.post(url("question", study, position=2), payload)
    assert answered["Location"] == url("question", study, position=3)
    assert Response.objects.filter(participant=p).count() == 2
    # The page's script: the answer's 3 (its update also marks the next question shown), then
    # the next question (and its successor, for preloading) from the questions kept: their
    # candidates (1, not seen yet) — one request, 4 statements (6 here), against 11 in two
    # requests before.
    p.refresh_from_db()
    payload = answer_payload(p)
    with django_assert_max_num_queries(6):
        answered = client.post(url("question", study, position=3), payload, **JSON)
    assert answered.status_code == 200
    assert answered.json()["question"]["number"] == 4


def test_script_answer_gets_the_next_question_as_the_page_would_show_it():
    """survey.js posts the form asking for JSON: the acknowledgement brings the next question,
    the same data its page renders, and marks it served."""
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    client.get(url("question", study, position=1))
    reply = client.post(url("question", study, position=1), answer_payload(p), **JSON)
    assert reply.status_code == 200
    assert reply["Content-Type"] == "application/json"
    assert "no-store" in reply["Cache-Control"]
    data = reply.json()
    assert data["next"] == url("question", study, position=2)
    assert data["notice"] == ""
    shown = data["question"]
    second = Assignment.objects.select_related("match_set").get(participant=p, position=2)
    p.refresh_from_db()
    shown_at = p.current_served_at
    assert p.current_position == 2
    assert shown_at is not None
    assert shown["number"] == 2
    assert shown["total"] == study.question_count
    assert shown["token"] == str(second.token)
    assert shown["url"] == url("question", study, position=2)
    assert shown["next_url"] == url("question", study, position=3)
    assert shown["query_image"] == second.match_set.query_image.url
    by_rank = {c.rank: c.image.url for c in second.match_set.candidates.all()}
    order = second.display_order(study.k)
    assert shown["candidates"] == [
        {"number": n, "url": by_rank[rank]} for n, rank in enumerate(order, start=1)
    ]
    third = Assignment.objects.select_related("match_set").get(participant=p, position=3)
    third_by_rank = {c.rank: c.image.url for c in third.match_set.candidates.all()}
    # The next question's images in its own display order, never in rank order.
    assert shown["preload"] == [third.match_set.query_image.url] + [
        third_by_rank[rank] for rank in third.display_order(study.k)
    ]
    assert shown["button"] == "Next question"
    # Its page, loaded instead (a reload), shows the same question with the same served time.
    page = client.get(url("question", study, position=2)).content.decode()
    assert f'value="{second.token}"' in page
    assert all(f'src="{c["url"]}"' in page for c in shown["candidates"])
    p.refresh_from_db()
    assert p.current_served_at == shown_at


def test_script_answers_through_the_last_question_then_goes_to_the_debrief():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    seen = []
    data = None
    for _ in range(study.question_count):
        p.refresh_from_db()
        data = client.post(
            url("question", study, position=p.current_position), answer_payload(p), **JSON
        ).json()
        if data["question"]:
            seen.append(data["question"])
            assert data["question"]["attention"] is None or data["question"]["attention"]["label"]
    assert [q["number"] for q in seen] == list(range(2, study.question_count + 1))
    assert seen[-1]["button"] == "Finish the questions"
    assert seen[-1]["next_url"] == url("debrief", study)
    assert seen[-1]["preload"] == []
    assert data == {"next": url("debrief", study), "question": None, "notice": ""}
    assert Response.objects.filter(participant=p).count() == study.question_count
    # A retry of the last answer (its acknowledgement lost) changes nothing and says where to go.
    last = Assignment.objects.get(participant=p, position=study.question_count)
    again = client.post(
        url("question", study, position=study.question_count),
        {"question": str(last.token), "selected": ["1"], "confidence": "3"},
        **JSON,
    )
    assert again.json()["next"] == url("debrief", study)
    assert Response.objects.filter(participant=p).count() == study.question_count


def test_script_answer_to_a_question_left_behind_gets_the_current_one_and_a_notice():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    first = answer_payload(p)
    client.post(url("question", study, position=1), first, **JSON)
    # The same answer again (a retry whose acknowledgement was lost), then a changed one.
    for payload in (first, {**first, "selected": ["2"]}):
        data = client.post(url("question", study, position=1), payload, **JSON).json()
        assert data["question"]["number"] == 2
        assert data["notice"] == "You have already answered question 1; your first answer is kept."
    first_question = Assignment.objects.get(participant=p, position=1)
    assert Response.objects.get(participant=p).selected_ranks == [
        first_question.display_order(study.k)[0]  # photo 1, the first answer
    ]


def test_script_answer_refused_or_incomplete_is_a_json_4xx_with_the_reason():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    other = Client()
    q = at_questions(
        other,
        study,
        {
            **PARAMS,
            "PROLIFIC_PID": prolific_id("PIDVIEW0002"),
            "SESSION_ID": prolific_id("SESSVIEW02"),
        },
    )
    foreign = client.post(url("question", study, position=1), answer_payload(q), **JSON)
    assert foreign.status_code == 403
    assert foreign.json() == {
        "error": "This question does not belong to you.",
        "code": "not_your_question",
    }
    incomplete = client.post(
        url("question", study, position=1), answer_payload(p, confidence=""), **JSON
    )
    assert incomplete.status_code == 400
    assert incomplete.json()["error"].startswith("The answer was not complete:")
    stranger = Client().post(url("question", study, position=1), answer_payload(p), **JSON)
    assert stranger.status_code == 403
    assert "open the study again" in stranger.json()["error"]
    assert not Response.objects.filter(participant__in=[p, q]).exists()
    assert RefusedRequest.objects.filter(participant=p).count() == 1


def test_script_and_form_get_the_same_rule_and_message_from_the_one_validation():
    study = study_with_match_sets()
    client = Client()
    p = at_questions(client, study)
    both = answer_payload(p, none_of_these="on")
    form = client.post(url("question", study, position=1), both)
    assert form.status_code == 400
    assert services.PHOTOS_AND_NONE.replace("'", "&#x27;").encode() in form.content
    script = client.post(url("question", study, position=1), both, **JSON)
    assert script.status_code == 400
    assert script.json()["code"] == "invalid_answer"
    assert script.json()["error"].endswith(services.PHOTOS_AND_NONE)
    assert not Response.objects.exists()


def test_question_page_gives_its_script_the_servers_messages():
    study = study_with_match_sets()
    client = Client()
    at_questions(client, study)
    page = client.get(url("question", study, position=1))
    form = page.content.decode()
    assert f'data-confidence-missing="{services.CONFIDENCE_MISSING}"' in form
    assert 'data-nothing-selected="Select at least one photo, or &#x27;none of these&#x27;."' in (
        form
    )
