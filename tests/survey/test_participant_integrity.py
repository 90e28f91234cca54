"""Real participants only: Prolific's ID format, the study's maximum time, re-entry flags."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from survey import services
from survey.assignment import match_sets_with_counts
from survey.dashboard import study_dashboard
from survey.dataprotection import participant_ids_purge
from survey.exports import responses_long
from survey.models import Participant, RefusedRequest, Response, Study
from survey.ratelimit import client_key
from survey.services import PROLIFIC_ID_RE, REENTRY_SAME_BROWSER, REENTRY_SAME_NETWORK
from survey.services.timeouts import arrival_marking_forget
from tests.factories import STUDY_ID, StudyFactory, prolific_id, study_with_match_sets
from tests.survey.helpers import answer_current, at_questions, entered
from tests.survey.http_helpers import JSON, answer_payload, url
from tests.survey.http_helpers import at_questions as http_at_questions

pytestmark = pytest.mark.django_db

Status = Participant.Status


def link(label: str) -> dict[str, str]:
    """The URL parameters of a Prolific link for the participant ``label``."""
    return {
        "PROLIFIC_PID": prolific_id(label),
        "STUDY_ID": STUDY_ID,
        "SESSION_ID": prolific_id(f"session-{label}"),
    }


def out_of_time(p: Participant, *, minutes_over: int = 1) -> None:
    """Move the participant's entry back so that their study's maximum time has passed."""
    study = Study.objects.get(pk=p.study_id)
    entered_at = timezone.now() - timedelta(minutes=study.maximum_minutes + minutes_over)
    Participant.objects.filter(pk=p.pk).update(entered_at=entered_at)


# --- Prolific's ID format -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize(
    "value",
    [
        "PID0000001",  # made up: the old rule (6–64 letters, digits, '-', '_') took it
        "5f0e1d2c3b4a59687766554",  # 23 hex characters
        "5f0e1d2c3b4a5968776655441",  # 25
        "5f0e1d2c3b4a59687766554g",  # 24, one not hexadecimal
        "5f0e1d2c-b4a5-9687-7665",
    ],
)
def test_ids_not_in_prolifics_format_are_refused_with_what_was_wrong(name, value):
    study = study_with_match_sets(per_method=5)
    params = {**link("A"), name: value}
    with pytest.raises(services.EntryRefused) as refused:
        services.participant_enter(
            study=study,
            prolific_pid=params["PROLIFIC_PID"],
            study_id=params["STUDY_ID"],
            session_id=params["SESSION_ID"],
        )
    message = refused.value.message
    assert f"{name} is not a valid Prolific ID" in message
    assert "24 characters" in message
    assert "open the study again from Prolific" in message
    assert value not in message  # never repeated back
    assert not Participant.objects.exists()


def test_the_refusal_page_says_what_was_wrong_and_what_to_do():
    study = study_with_match_sets(per_method=5)
    params = {**link("A"), "PROLIFIC_PID": "TESTPID01"}
    response = Client().get(url("entry", study), params, follow=True)
    assert response.status_code == 400
    text = response.content.decode()
    assert "PROLIFIC_PID is not a valid Prolific ID" in text
    assert "24 characters long, made only of the digits 0–9 and the letters a–f" in text
    assert "(this one has 9 characters)" in text
    assert "open the study again from Prolific" in text
    assert not Participant.objects.exists()


def test_upper_case_ids_are_the_same_participant_as_lower_case_ones():
    study = study_with_match_sets(per_method=5, prolific_study_id=STUDY_ID)
    pid = prolific_id("A")
    first = services.participant_enter(
        study=study, prolific_pid=pid, study_id=STUDY_ID, session_id=prolific_id("s1")
    )
    again = services.participant_enter(
        study=study,
        prolific_pid=pid.upper(),
        study_id=STUDY_ID.upper(),
        session_id=prolific_id("s2").upper(),
    )
    assert again.pk == first.pk
    assert Participant.objects.count() == 1
    assert first.prolific_pid == pid
    assert PROLIFIC_ID_RE.fullmatch(first.session_id)


def test_a_pilot_study_that_accepts_any_ids_takes_made_up_ones():
    study = study_with_match_sets(per_method=5, accept_any_ids=True, prolific_study_id="PILOT1")
    p = services.participant_enter(
        study=study, prolific_pid="PILOT-PID-1", study_id="PILOT1", session_id="PILOT_SESSION"
    )
    assert p.prolific_pid == "PILOT-PID-1"
    assert p.session_id == "PILOT_SESSION"
    # Still only safe characters: a pilot is not a way in for markup or padding.
    with pytest.raises(services.EntryRefused, match="PROLIFIC_PID is not a valid identifier"):
        services.participant_enter(
            study=study, prolific_pid="<b>x</b>", study_id="PILOT1", session_id="PILOT_S2"
        )


def test_accept_any_ids_is_off_by_default_and_says_what_it_is_for():
    field = Study._meta.get_field("accept_any_ids")
    assert StudyFactory().accept_any_ids is False
    assert "pilots and demos" in field.help_text


# --- places and balance within the study's maximum minutes ----------------------------------


def test_an_abandoned_arrival_stops_holding_a_place_after_maximum_minutes():
    study = study_with_match_sets(per_method=5, max_participants=1, maximum_minutes=30)
    abandoned = entered(study, pid="PIDGONE001")
    out_of_time(abandoned, minutes_over=-1)  # 29 minutes in: still holds the place
    with pytest.raises(services.StudyUnavailable, match="All places"):
        entered(study, pid="PIDNEXT001")
    out_of_time(abandoned, minutes_over=1)  # 31 minutes in: the place is free again
    newcomer = entered(study, pid="PIDNEXT001")
    assert newcomer.status == Status.ACTIVE
    abandoned.refresh_from_db()
    assert abandoned.status == Status.TIMED_OUT
    assert abandoned.step == Participant.Step.DONE
    assert abandoned.completion_code == ""
    assert abandoned.finished_at == abandoned.entered_at + timedelta(minutes=30)


def test_balance_ignores_participants_whose_time_is_up():
    study = study_with_match_sets(per_method=6)
    first = at_questions(study, pid="PIDFIRST01")
    mine = set(
        first.assignments.filter(is_attention_check=False).values_list("match_set", flat=True)
    )
    counts = {ms.pk: ms.answered_by for ms in match_sets_with_counts(study)}
    assert {pk for pk, n in counts.items() if n} == mine
    out_of_time(first)  # not marked yet: already no longer counted
    assert all(ms.answered_by == 0 for ms in match_sets_with_counts(study))
    assert not Participant.objects.counted_for_balance().exists()
    second = at_questions(study, pid="PIDSECOND1")
    # The first's assignment slot, freed by the time limit, is the one claimed next, though
    # the first is not marked yet: arrivals mark overdue participants at most every
    # ARRIVAL_MARKING_SECONDS per process, and the first's own arrival just did.
    theirs = second.assignments.filter(is_attention_check=False).values_list("match_set", flat=True)
    assert set(theirs) == mine
    first.refresh_from_db()
    assert first.status == Status.ACTIVE
    assert list(Participant.objects.counted_for_balance()) == [second]
    arrival_marking_forget()  # as when that time has passed
    entered(study, pid="PIDTHIRD01")
    first.refresh_from_db()
    assert first.status == Status.TIMED_OUT  # marked at the third's arrival
    second.refresh_from_db()
    assert second.status == Status.ACTIVE


def test_arrivals_mark_overdue_participants_now_and_then(django_assert_max_num_queries):
    """The marking is a scan of the study's active participants: one arrival in
    ARRIVAL_MARKING_SECONDS per process does it, the others skip it."""
    study = study_with_match_sets(per_method=5)
    gone = entered(study, pid="PIDGONE001")  # marks (nobody yet), then not again for a while
    out_of_time(gone)
    with django_assert_max_num_queries(7) as skipped:
        entered(study, pid="PIDNEXT001")
    gone.refresh_from_db()
    assert gone.status == Status.ACTIVE
    arrival_marking_forget()
    with django_assert_max_num_queries(9) as marking:
        entered(study, pid="PIDLATE001")
    gone.refresh_from_db()
    assert gone.status == Status.TIMED_OUT
    assert len(marking) > len(skipped)


def test_a_timed_out_participants_answer_is_refused_and_stores_nothing():
    study = study_with_match_sets(per_method=5, maximum_minutes=40)
    client = Client()
    p = http_at_questions(client, study, link("A"))
    answer = answer_payload(p)
    out_of_time(p)
    response = client.post(url("question", study, position=1), answer)
    assert response.status_code == 410
    text = response.content.decode()
    assert "Your time for this study has run out" in text
    assert "40 minutes" in text
    assert "return the study on Prolific" in text
    assert not Response.objects.exists()
    p.refresh_from_db()
    assert p.status == Status.TIMED_OUT
    assert RefusedRequest.objects.filter(participant=p, reason="timed_out").count() == 1
    # The page's script gets the same refusal as JSON, and nothing is stored either.
    scripted = client.post(url("question", study, position=1), answer, **JSON)
    assert scripted.status_code == 410
    assert "Your time for this study has run out" in scripted.json()["error"]
    assert not Response.objects.exists()


def test_every_page_and_a_new_entry_say_the_time_ran_out():
    study = study_with_match_sets(per_method=5)
    client = Client()
    client.get(url("entry", study), link("A"))
    p = Participant.objects.get()
    out_of_time(p)
    page = client.get(url("consent", study))
    assert page.status_code == 410
    assert "return the study on Prolific" in page.content.decode()
    assert client.post(url("consent", study), {"decision": "agree"}).status_code == 410
    p.refresh_from_db()
    assert (p.status, p.consented_at) == (Status.TIMED_OUT, None)
    again = Client().get(url("entry", study), link("A"), follow=True)
    assert again.status_code == 410
    assert "Your time for this study has run out" in again.content.decode()


def test_participants_time_out_marks_only_active_ones_past_their_time():
    study = study_with_match_sets(per_method=5)
    late = entered(study, pid="PIDLATE001")
    in_time = entered(study, pid="PIDINTIME1")
    declined = services.participant_consent(
        participant=entered(study, pid="PIDDECLIN1"), consent=False
    )
    other = study_with_match_sets(per_method=5)
    elsewhere = entered(other, pid="PIDOTHER01")
    for p in (late, declined, elsewhere):
        out_of_time(p)
    assert services.participants_time_out(study=study) == 1
    statuses = dict(Participant.objects.values_list("pk", "status"))
    assert statuses[late.pk] == Status.TIMED_OUT
    assert statuses[in_time.pk] == Status.ACTIVE
    assert statuses[declined.pk] == Status.NO_CONSENT
    assert statuses[elsewhere.pk] == Status.ACTIVE  # another study: left alone
    stdout = StringIO()
    call_command("time_out_participants", stdout=stdout)
    assert "1 participant(s) timed out in all studies" in stdout.getvalue()
    assert Participant.objects.get(pk=elsewhere.pk).status == Status.TIMED_OUT


def test_exports_and_dashboard_show_an_unmarked_participant_past_their_time_as_timed_out():
    study = study_with_match_sets(per_method=5)
    p = answer_current(at_questions(study, pid="PIDSLOW001")).participant
    out_of_time(p)
    rows = list(responses_long(study))
    assert [row["participant_status"] for row in rows] == [Status.TIMED_OUT]
    counts = {c["status"]: c["n"] for c in study_dashboard(study=study)["counts"]}
    assert (counts[Status.TIMED_OUT], counts[Status.ACTIVE]) == (1, 0)
    assert Participant.objects.get().status == Status.ACTIVE  # reading changed nothing


# --- re-entry under a new PID ---------------------------------------------------------------


def test_reentry_under_a_new_pid_from_the_same_browser_is_flagged_not_refused():
    study = study_with_match_sets(per_method=5)
    client = Client(REMOTE_ADDR="198.51.100.7")
    client.get(url("entry", study), link("A"))
    client.post(url("consent", study), {"decision": "decline"})
    first = Participant.objects.get()
    assert first.status == Status.NO_CONSENT
    assert first.integrity_flags == []
    response = client.get(url("entry", study), link("B"))
    assert response["Location"] == url("consent", study)  # admitted
    second = Participant.objects.get(prolific_pid=prolific_id("B"))
    assert second.integrity_flags == [REENTRY_SAME_BROWSER, REENTRY_SAME_NETWORK]


@pytest.mark.parametrize("ending", ["failed_attention", "timed_out"])
def test_reentry_from_the_same_network_in_a_new_browser_is_flagged(ending):
    study = study_with_match_sets(per_method=5)
    first_browser = Client(REMOTE_ADDR="198.51.100.7")
    p = http_at_questions(first_browser, study, link("A"))
    if ending == "failed_attention":
        while p.status == Status.ACTIVE:
            p = answer_current(p, follow_checks=False).participant
        assert p.status == Status.FAILED_ATTENTION
    else:
        out_of_time(p)
        arrival_marking_forget()  # arrivals mark overdue participants now and then: now
    Client(REMOTE_ADDR="198.51.100.7").get(url("entry", study), link("B"))
    Client(REMOTE_ADDR="203.0.113.9").get(url("entry", study), link("C"))
    flags = dict(Participant.objects.values_list("prolific_pid", "integrity_flags"))
    assert flags[prolific_id("B")] == [REENTRY_SAME_NETWORK]
    assert flags[prolific_id("C")] == []  # another network
    assert Participant.objects.get(pk=p.pk).status == ending


def test_no_flag_after_a_completed_or_ongoing_participation_on_the_same_network():
    study = study_with_match_sets(per_method=5)
    done = at_questions(study, pid="PIDDONE001")
    while done.step == Participant.Step.QUESTIONS:
        done = answer_current(done).participant
    services.participant_finish(participant=done)
    Participant.objects.filter(pk=done.pk).update(client_hash=client_key("127.0.0.1"))
    Client().get(url("entry", study), link("B"))
    Client().get(url("entry", study), link("C"))
    assert list(Participant.objects.exclude(integrity_flags=[])) == []


def test_the_client_hash_is_a_keyed_hash_of_the_client_behind_a_trusted_proxy(settings):
    settings.FVR_TRUSTED_PROXIES = ["10.0.0.0/8"]
    study = study_with_match_sets(per_method=5)
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.50").get(
        url("entry", study), link("A")
    )
    p = Participant.objects.get()
    assert p.client_hash == client_key("203.0.113.50")
    stored = json.dumps(list(Participant.objects.values()), default=str)
    assert "203.0.113.50" not in stored
    assert "10.0.0.2" not in stored


def test_flags_are_in_the_export_and_the_admin_list(admin_client):
    study = study_with_match_sets(per_method=5)
    services.participant_consent(participant=entered(study, pid="PIDNOPE001"), consent=False)
    flagged = services.participant_enter(
        study=study,
        prolific_pid=prolific_id("PIDAGAIN01"),
        study_id=STUDY_ID,
        session_id=prolific_id("SAGAIN0001"),
        client_hash="",
        browser_participant_id=Participant.objects.get().pk,
    )
    assert flagged.integrity_flags == [REENTRY_SAME_BROWSER]
    answer_current(
        services.participant_start_questions(
            participant=services.participant_demographics_save(
                participant=services.participant_consent(participant=flagged, consent=True),
                gender="man",
                age_group="18-29",
            )
        )
    )
    (row,) = responses_long(study)
    assert row["participant_flags"] == REENTRY_SAME_BROWSER
    changelist = reverse("admin:survey_participant_changelist")
    listed = admin_client.get(changelist, {"flag": "any"})
    assert list(listed.context["cl"].result_list) == [flagged]
    assert REENTRY_SAME_BROWSER in listed.content.decode()
    by_reason = admin_client.get(changelist, {"flag": REENTRY_SAME_NETWORK})
    assert list(by_reason.context["cl"].result_list) == []
    unflagged = admin_client.get(changelist, {"flag": "none"})
    assert [p.prolific_pid for p in unflagged.context["cl"].result_list] == [
        prolific_id("PIDNOPE001")
    ]


def test_purge_counts_timed_out_participants_and_blanks_the_network_hash():
    study = study_with_match_sets(per_method=5)
    Client().get(url("entry", study), link("A"))
    late = Participant.objects.get()
    assert late.client_hash
    out_of_time(late)
    services.participants_time_out(study=study)
    result = participant_ids_purge(study=study, actor="test")
    assert result.timed_out == {study.slug: 1}
    late.refresh_from_db()
    assert (late.prolific_pid, late.client_hash) == ("", "")
