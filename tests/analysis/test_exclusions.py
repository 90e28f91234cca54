import io
from dataclasses import replace

import pandas as pd
import pytest
from django.utils import timezone

from analysis import columns as c
from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.outcomes import add_outcomes
from analysis.report import AnalysisConfig, build_report
from analysis.services import analysis_config_for, study_responses_frame
from survey import services
from survey.exports import csv_text
from survey.models import Participant
from tests.factories import study_with_match_sets
from tests.survey.helpers import answer_current, at_questions


def _row(pid: str, pos: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        c.PARTICIPANT: pid,
        c.POSITION: pos,
        c.MATCH_SET: f"m{pos}",
        c.METHOD: "nbnet",
        c.IS_ATTENTION_CHECK: False,
        c.ATTENTION_PASSED: pd.NA,
        c.CONFIDENCE: 1 + pos % 5,
        c.ANSWERED_AT: f"2024-01-01T10:{pos:02d}:00+00:00",
        c.PARTICIPANT_STATUS: c.STATUS_COMPLETED,
        c.PARTICIPANT_TOTAL_S: 600.0,
        c.ANY_CORRECT: False,
    }
    base.update(kw)
    return base


def _toy() -> pd.DataFrame:
    rows = []
    for pid in ("ok1", "ok2", "ok3"):
        rows += [_row(pid, p) for p in range(1, 7)]
        rows.append(_row(pid, 7, **{c.IS_ATTENTION_CHECK: True, c.ATTENTION_PASSED: True}))
    rows.append(_row("ok1", 8, **{c.MATCH_SET: "m1"}))  # duplicate answer to m1
    for p in (1, 2):  # two failed attention checks
        rows.append(_row("att", p, **{c.IS_ATTENTION_CHECK: True, c.ATTENTION_PASSED: False}))
    rows += [_row("att", p) for p in (3, 4)]
    rows += [_row("ret", p, **{c.PARTICIPANT_STATUS: c.STATUS_RETURNED}) for p in (1, 2)]
    rows += [_row("fast", p, **{c.PARTICIPANT_TOTAL_S: 100.0}) for p in range(1, 7)]
    rows += [_row("flat", p, **{c.CONFIDENCE: 3, c.ANY_CORRECT: True}) for p in range(1, 7)]
    df = pd.DataFrame(rows)
    df[c.ATTENTION_PASSED] = df[c.ATTENTION_PASSED].astype("boolean")
    return df


def test_exclusions_are_counted_step_by_step() -> None:
    result = apply_exclusions(_toy(), ExclusionConfig())
    steps = result.steps_table().set_index("rule")
    assert list(steps.index) == [
        "start",
        "duplicates",
        "failed_attention",
        "attention_items",
        "incomplete",
        "unverified",
        "flagged",
        "fast",
        "same_confidence",
    ]
    assert steps.loc["start", "participants_left"] == 7
    assert steps.loc["duplicates", "responses_removed"] == 1
    assert steps.loc["failed_attention", "participants_removed"] == 1
    assert steps.loc["failed_attention", "responses_removed"] == 4
    assert steps.loc["attention_items", "responses_removed"] == 3
    assert steps.loc["incomplete", "participants_removed"] == 1
    assert steps.loc["fast", "participants_removed"] == 1
    assert steps.loc["same_confidence", "participants_removed"] == 1
    assert steps.loc["same_confidence", "participants_left"] == 3
    assert sorted(result.data[c.PARTICIPANT].unique()) == ["ok1", "ok2", "ok3"]
    assert result.removed["fast"] == ("fast",)
    # each step's left = previous left - removed
    left = steps["responses_left"].to_numpy()
    assert (left[:-1] - steps["responses_removed"].to_numpy()[1:] == left[1:]).all()


def test_exclusions_never_look_at_accuracy() -> None:
    df = _toy()
    flipped = df.assign(**{c.ANY_CORRECT: ~df[c.ANY_CORRECT].astype(bool)})
    a = apply_exclusions(df, ExclusionConfig()).data
    b = apply_exclusions(flipped, ExclusionConfig()).data
    assert a[c.PARTICIPANT].tolist() == b[c.PARTICIPANT].tolist()


def test_sensitivity_variant_keeps_everyone_but_drops_attention_items() -> None:
    result = apply_exclusions(_toy(), ExclusionConfig.include_everyone())
    assert result.data[c.PARTICIPANT].nunique() == 7
    assert not result.data[c.IS_ATTENTION_CHECK].any()


def test_messy_study_loses_careless_participants(messy_study) -> None:
    result = apply_exclusions(add_outcomes(messy_study), ExclusionConfig())
    steps = result.steps_table().set_index("rule")
    for rule in ("failed_attention", "incomplete", "fast", "same_confidence"):
        assert steps.loc[rule, "participants_removed"] > 0, rule
    assert steps.loc["same_confidence", "participants_left"] == pytest.approx(
        result.data[c.PARTICIPANT].nunique()
    )


# --- integrity: unverified and flagged participations (issue 15) ----------------------------


def _with_integrity(df: pd.DataFrame, verified: dict[str, object], flags: dict[str, str]):
    out = df.copy()
    out[c.PARTICIPANT_VERIFIED] = pd.array(
        [verified.get(p, True) for p in out[c.PARTICIPANT]], dtype="boolean"
    )
    out[c.PARTICIPANT_FLAGS] = [flags.get(p, "") for p in out[c.PARTICIPANT]]
    return out


def test_unverified_and_flagged_participants_are_left_out_and_counted() -> None:
    df = _with_integrity(
        _toy(), {"ok2": False}, {"ok3": "reentry_same_browser;reentry_same_network"}
    )
    result = apply_exclusions(df, ExclusionConfig())
    steps = result.steps_table().set_index("rule")
    assert steps.loc["unverified", "participants_removed"] == 1
    assert steps.loc["unverified", "responses_removed"] == 6
    assert "unverified" in steps.loc["unverified", "description"]
    assert steps.loc["flagged", "participants_removed"] == 1
    assert steps.loc["flagged", "description"] == (
        "integrity flags (reentry_same_browser 1, reentry_same_network 1)"
    )
    assert result.removed["unverified"] == ("ok2",)
    assert result.removed["flagged"] == ("ok3",)
    assert sorted(result.data[c.PARTICIPANT].unique()) == ["ok1"]
    # The plan may include them; the sensitivity variant keeps the plan's integrity rules.
    kept = apply_exclusions(df, ExclusionConfig(exclude_unverified=False, exclude_flagged=False))
    assert {"ok2", "ok3"} <= set(kept.data[c.PARTICIPANT])
    everyone = apply_exclusions(df, ExclusionConfig().sensitivity_variant())
    assert {"ok2", "ok3"}.isdisjoint(everyone.data[c.PARTICIPANT])
    assert {"att", "ret", "fast", "flat"} <= set(everyone.data[c.PARTICIPANT])


def test_verification_does_not_apply_to_a_study_not_run_on_prolific() -> None:
    df = _with_integrity(_toy(), {}, {})
    df[c.PARTICIPANT_VERIFIED] = pd.array([pd.NA] * len(df), dtype="boolean")
    steps = apply_exclusions(df, ExclusionConfig()).steps_table().set_index("rule")
    assert steps.loc["unverified", "participants_removed"] == 0
    assert "does not apply" in steps.loc["unverified", "description"]


def test_report_names_the_integrity_exclusions_with_their_counts(messy_study, tmp_path) -> None:
    people = sorted(messy_study[c.PARTICIPANT].unique())
    df = _with_integrity(messy_study, dict.fromkeys(people[:3], False), {people[3]: "reentry"})
    config = AnalysisConfig(n_resamples=99, variability=False, figures=False, sensitivity=True)
    summary = build_report(df, config, tmp_path)
    steps = {s["rule"]: s for s in summary["exclusions"]}
    assert steps["unverified"]["participants_removed"] == 3
    assert summary["excluded_participants"]["flagged"] == [people[3]]
    assert "unverified" in {s["rule"] for s in summary["sensitivity"]["exclusions"]}
    report = (tmp_path / "report.md").read_text()
    assert "unverified" in report
    assert "integrity flags (reentry 1)" in report


# The helpers answer every question with the same confidence, within seconds: rules about
# careless answering are not what these tests are about.
CARELESS_RULES_OFF = {"exclude_same_confidence": False, "fast_fraction": None}


def _finished(study, pid: str) -> Participant:
    p = at_questions(study, pid=pid)
    while p.step == Participant.Step.QUESTIONS:
        p = answer_current(p).participant
    return services.participant_finish(participant=p)


@pytest.mark.django_db
@pytest.mark.parametrize("on_prolific", [True, False])
def test_analysis_leaves_out_unverified_participants_of_a_study_run_on_prolific(on_prolific):
    study = study_with_match_sets(
        per_method=5, prolific_study_id="64f1b000a1b2c3d4e5f60718" if on_prolific else ""
    )
    checked, unchecked = _finished(study, "PIDVERI001"), _finished(study, "PIDVERI002")
    Participant.objects.filter(pk=checked.pk).update(session_verified_at=timezone.now())

    frame = study_responses_frame(study=study)
    config = replace(analysis_config_for(study=study).exclusions, **CARELESS_RULES_OFF)
    result = apply_exclusions(add_outcomes(frame), config)

    analysed = set(result.data[c.PARTICIPANT])
    if on_prolific:
        assert analysed == {checked.pseudonym}
        assert result.removed["unverified"] == (unchecked.pseudonym,)
    else:  # a demo or pilot: nothing to verify against
        assert analysed == {checked.pseudonym, unchecked.pseudonym}
    # A CSV round trip (the export staff download) reads the same.
    csv_frame = pd.read_csv(io.StringIO(csv_text(study)))
    again = apply_exclusions(add_outcomes(csv_frame), ExclusionConfig(**CARELESS_RULES_OFF))
    assert set(again.data[c.PARTICIPANT]) == analysed


@pytest.mark.django_db
def test_analysis_plan_may_include_unverified_participants():
    study = study_with_match_sets(
        per_method=5,
        prolific_study_id="64f1b000a1b2c3d4e5f60718",
        analysis_plan={"exclusions": {"exclude_unverified": False}},
    )
    _finished(study, "PIDVERI003")
    config = replace(analysis_config_for(study=study).exclusions, **CARELESS_RULES_OFF)
    assert config.exclude_unverified is False
    result = apply_exclusions(add_outcomes(study_responses_frame(study=study)), config)
    assert result.data[c.PARTICIPANT].nunique() == 1
