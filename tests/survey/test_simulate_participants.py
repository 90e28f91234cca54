"""Simulated participants take a demo study through the real HTTP pages.

(a) fast: 20 bots with the random observer against a server started by the command;
(b) slow, with a recognizer observer: tests/reconstruction/test_observers.py (it needs torch).
"""

import json
import random

import pytest
from django.core.management import CommandError

from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.outcomes import add_outcomes
from analysis.services import study_responses_frame
from survey.bots import (
    ObserverParams,
    PilotRun,
    observer_expected_accuracy,
    page_parse,
    softmax_decide,
    uniform_decide,
)
from survey.models import Participant, Response, pseudonymise
from tests.factories import StudyFactory, study_with_match_sets
from tests.survey.helpers import simulate

# --- the decision rule -------------------------------------------------------------------


def test_softmax_rule_probabilities_follow_the_stated_formula():
    params = ObserverParams(temperature=0.05, none_threshold=0.5)
    scores = {1: 0.9, 2: 0.6, 3: 0.4}
    decision = softmax_decide(scores=scores, params=params, rng=random.Random(1))
    import math

    weights = {r: math.exp(s / 0.05) for r, s in scores.items()}
    z = sum(weights.values()) + math.exp(0.5 / 0.05)
    for rank, weight in weights.items():
        assert decision.probabilities[rank] == pytest.approx(weight / z)
    assert decision.p_none == pytest.approx(math.exp(0.5 / 0.05) / z)
    assert 1 <= decision.confidence <= 5


def test_softmax_rule_draws_match_its_probabilities_and_margin_drives_confidence():
    params = ObserverParams(temperature=0.1, none_threshold=0.5)
    rng = random.Random(7)
    scores = {1: 0.8, 2: 0.6, 3: 0.5}
    draws = [softmax_decide(scores=scores, params=params, rng=rng) for _ in range(4000)]
    share_1 = sum(d.selected == [1] for d in draws) / len(draws)
    assert share_1 == pytest.approx(draws[0].probabilities[1], abs=0.03)
    chose_best = [d.confidence for d in draws if d.selected == [1]]
    chose_worst = [d.confidence for d in draws if d.selected == [3]]
    assert sum(chose_best) / len(chose_best) > sum(chose_worst) / len(chose_worst) + 1


def test_uniform_rule_gives_each_option_one_in_k_plus_one():
    decision = uniform_decide(photos=[1, 2, 3, 4, 5], rng=random.Random(0))
    assert list(decision.probabilities.values()) == pytest.approx([1 / 6] * 5)
    assert decision.p_none == pytest.approx(1 / 6)


def test_page_parser_reads_candidates_in_display_order_and_the_attention_instruction():
    html = """
    <p class="instruction" id="attention"><strong>Please read carefully:</strong> for this
    question, select <strong>photo 2</strong> only and answer
    <strong>“Fairly confident”</strong>.</p>
    <form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="tok">
    <input type="hidden" name="question" value="q-1">
    <figure class="query"><img src="/media/q.jpg"></figure>
    <label class="candidate" for="cand-1"><input type="checkbox" id="cand-1" name="selected"
      value="4"><img src="/media/a.jpg"><span>Photo 1</span></label>
    <label class="candidate" for="cand-2"><input type="checkbox" id="cand-2" name="selected"
      value="1"><img src="/media/b.jpg"><span>Photo 2</span></label>
    <label class="choice" for="conf-4"><input type="radio" id="conf-4" name="confidence"
      value="4"> Fairly confident</label></form>"""
    page = page_parse(html)
    assert page.query_image == "/media/q.jpg"
    assert page.candidates == [(4, "/media/a.jpg"), (1, "/media/b.jpg")]
    assert page.hidden_fields() == {"csrfmiddlewaretoken": "tok", "question": "q-1"}
    assert "select photo 2 only and answer “Fairly confident”" in page.texts["attention"]
    assert page.label_text["conf-4"] == "Fairly confident"


# --- (a) fast: random observer through HTTP ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_20_random_bots_complete_a_demo_study_over_http_and_careless_ones_are_excluded(
    tmp_path,
):
    study = study_with_match_sets(per_method=5, slug="pilot", is_demo=True)
    out = tmp_path / "run.json"
    text = simulate(
        "pilot", out, n=20, observer="random", careless=0.2, seed=5, concurrency=2, images="new"
    )
    assert "16 completed, 4 ended early" in text, text
    run = PilotRun.from_dict(json.loads(out.read_text())["run"])
    assert run.base_url.startswith("http://127.0.0.1:")  # the command's own HTTP server
    assert sum(r.requests for r in run.results) > 20 * 2 * study.question_count

    participants = {p.prolific_pid: p for p in Participant.objects.filter(study=study)}
    assert len(participants) == 20
    careless = {r.pid for r in run.results if r.careless}
    assert len(careless) == 4
    for result in run.results:
        p = participants[result.pid]
        if result.careless:
            assert p.status == Participant.Status.FAILED_ATTENTION
            assert result.completion_code == study.failed_attention_code
        else:
            assert p.status == Participant.Status.COMPLETED
            assert result.outcome == "completed"
            assert result.completion_code == study.completion_code
            assert p.responses.count() == study.question_count
            # every attention check followed as instructed
            assert not p.responses.filter(attention_passed=False).exists()
    # What the bots posted is what the server stored.
    # Bots post photo numbers; the server stores the ranks shown under them.
    stored = {
        (r.participant.prolific_pid, r.assignment.position): (
            sorted(r.assignment.photo_number(rank, study.k) for rank in r.selected_ranks),
            r.confidence,
        )
        for r in Response.objects.select_related("participant", "assignment")
    }
    for result in run.results:
        for answer in result.answers:
            assert stored[(result.pid, answer.position)] == (answer.selected, answer.confidence)

    frame = add_outcomes(study_responses_frame(study=study))
    excluded = apply_exclusions(frame, ExclusionConfig(fast_fraction=None))
    assert set(excluded.removed["failed_attention"]) == {pseudonymise(pid) for pid in careless}

    expected = observer_expected_accuracy(study=study, run=run)
    assert {row.method for row in expected} == set(study.methods)
    for row in expected:
        assert row.expected == pytest.approx(1 / 6)  # one of K photos or "none", uniformly


@pytest.mark.django_db(transaction=True)
def test_bots_take_a_running_server_given_by_base_url(tmp_path, live_server):
    study = study_with_match_sets(per_method=5, slug="pilot", is_demo=True)
    out = tmp_path / "run.json"
    text = simulate(
        "pilot", out, n=3, observer="random", careless=0, base_url=live_server.url, concurrency=1
    )
    assert f"→ {live_server.url}/s/pilot/" in text
    run = PilotRun.from_dict(json.loads(out.read_text())["run"])
    assert run.count("completed") == 3
    # every image of every page was loaded, as a browser does (--images every, the default)
    images = sum(r.requests for r in run.results) - 3 * (2 * study.question_count + 8)
    assert images >= 3 * study.question_count * (study.k + 1)
    assert Participant.objects.filter(study=study, status="completed").count() == 3


@pytest.mark.django_db(transaction=True)
def test_bots_refuse_a_study_that_is_not_a_demo(tmp_path):
    StudyFactory(slug="real-study", is_demo=False)
    with pytest.raises(CommandError, match="not a demo"):
        simulate("real-study", tmp_path / "x.json", n=1, observer="random")


@pytest.mark.django_db(transaction=True)
def test_unknown_observer_is_refused_with_the_known_names(tmp_path):
    study_with_match_sets(per_method=5, slug="pilot", is_demo=True)
    with pytest.raises(CommandError, match=r"Unknown observer 'nobody'.*dlib-resnet"):
        simulate("pilot", tmp_path / "x.json", n=1, observer="nobody")
