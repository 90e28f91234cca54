"""Pilot data: simulated participants driven through the real survey services.

They answer from stated true accuracies, on the model of ``analysis.simulation``:
logit = b_method + u_participant + v_identity.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone
from scipy import special

from analysis.services.errors import AnalysisError
from analysis.simulation import logit_intercept
from survey import services as flow
from survey.models import MatchSet, Participant, Study

DEFAULT_ACCURACIES: dict[str, float | None] = {
    "eigenfaces": 0.6,
    "nbnet": 0.4,
    "naive": 0.2,
    "vec2face": 0.5,
}
SIM_PREFIX = "SIM"
_CONF_THRESHOLDS = np.array([-1.2, 0.0, 1.0, 2.0])  # as analysis.simulation
P_NONE_WHEN_UNSURE = 0.3


@dataclass(frozen=True)
class SimulationResult:
    """What ``responses_simulate`` added."""

    participants: int
    completed: int
    failed_attention: int
    responses: int
    seconds: float


def _pick(
    rng: np.random.Generator,
    k: int,
    true_ranks: list[int],
    p_recognise: float | None,
) -> list[int]:
    """Ranks picked on one question (empty = "none of these"); None = at chance."""
    ranks = list(range(1, k + 1))
    if p_recognise is None:
        return [int(rng.choice(ranks))]
    wrong = [r for r in ranks if r not in true_ranks]
    if true_ranks and rng.random() < p_recognise:
        return [int(rng.choice(true_ranks))]
    if rng.random() < P_NONE_WHEN_UNSURE or not wrong:
        return []
    return [int(rng.choice(wrong))]


def responses_simulate(
    *,
    study: Study,
    participants: int,
    accuracies: Mapping[str, float | None] | None = None,
    participant_sd: float = 0.8,
    identity_sd: float = 0.5,
    careless_share: float = 0.0,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Add simulated participants (PIDs SIM000001, …) through the real survey flow.

    A method's accuracy is population-averaged (None = pure random picks). Careless
    participants answer at random and fail the attention checks. Entry skips only the
    "study is open" check, so a draft study is piloted without opening it (which would
    freeze its plan), and takes the made-up SIM IDs as a pilot study would; its rows are
    not changed.
    """
    _check_simulation_request(
        study=study, participants=participants, careless_share=careless_share, force=force
    )
    intercepts = _method_intercepts(
        study=study, accuracies=accuracies, participant_sd=participant_sd, identity_sd=identity_sd
    )
    rng = np.random.default_rng(seed)
    py_rng = random.Random(seed)
    identity_effect: dict[str, float] = {}
    start = Participant.objects.filter(study=study, prolific_pid__startswith=SIM_PREFIX).count()
    n_careless = round(careless_share * participants)
    careless = {int(i) for i in rng.choice(participants, n_careless, replace=False)}
    entry_study = _entry_study(study)
    started = time.perf_counter()
    completed = failed = answered = 0
    for i in range(participants):
        with transaction.atomic():
            p = _simulated_participant(
                study=entry_study,
                pid=f"{SIM_PREFIX}{start + i + 1:06d}",
                careless=i in careless,
                intercepts=intercepts,
                identity_effect=identity_effect,
                participant_effect=float(rng.normal(0.0, participant_sd)),
                identity_sd=identity_sd,
                rng=rng,
                py_rng=py_rng,
            )
        completed += p.status == Participant.Status.COMPLETED
        failed += p.status == Participant.Status.FAILED_ATTENTION
        answered += p.responses.count()
        if progress:
            progress(i + 1, participants)
    return SimulationResult(
        participants=participants,
        completed=completed,
        failed_attention=failed,
        responses=answered,
        seconds=round(time.perf_counter() - started, 3),
    )


def _check_simulation_request(
    *, study: Study, participants: int, careless_share: float, force: bool
) -> None:
    """AnalysisError for a study that is live with real participants, or impossible counts."""
    if study.status != Study.Status.DRAFT and not study.is_demo and not force:
        raise AnalysisError(
            f"Study '{study.slug}' is {study.get_status_display().lower()} and not a demo: "
            "simulated participants would be mixed with real ones in its exports and analyses. "
            "Pilot on a draft or demo study, or pass --force to add simulated data anyway."
        )
    if participants < 1:
        raise AnalysisError("Simulate at least one participant.")
    if not 0 <= careless_share <= 1:
        raise AnalysisError("The careless share must be between 0 and 1.")


def _method_intercepts(
    *,
    study: Study,
    accuracies: Mapping[str, float | None] | None,
    participant_sd: float,
    identity_sd: float,
) -> dict[str, float | None]:
    """Each method's logit intercept for its stated accuracy (None = at chance)."""
    accuracies = dict(DEFAULT_ACCURACIES if accuracies is None else accuracies)
    missing = [m for m in study.methods if m not in accuracies]
    if not study.methods:
        raise AnalysisError(f"Study '{study.slug}' has no match sets to answer.")
    if missing:
        raise AnalysisError(f"No accuracy given for method(s): {', '.join(missing)}.")
    total_sd = float(np.hypot(participant_sd, identity_sd))
    return {
        m: None if acc is None else logit_intercept(acc, total_sd) for m, acc in accuracies.items()
    }


def _entry_study(study: Study) -> Study:
    """An unsaved copy that the entry service sees as open and accepting made-up IDs."""
    entry_study = copy.copy(study)
    entry_study.status = Study.Status.OPEN
    entry_study.accept_any_ids = True  # SIM… IDs are made up, as a pilot's (rows unchanged)
    return entry_study


def _simulated_participant(
    *,
    study: Study,
    pid: str,
    careless: bool,
    intercepts: Mapping[str, float | None],
    identity_effect: dict[str, float],
    participant_effect: float,
    identity_sd: float,
    rng: np.random.Generator,
    py_rng: random.Random,
) -> Participant:
    """One simulated participation, from entry to completion code, on a realistic clock."""
    k = study.k
    p, clock, durations = _participant_to_questions(study=study, pid=pid, rng=rng, py_rng=py_rng)
    conf_bias = float(rng.normal(0.0, 0.7))
    questions = p.assignments.select_related("match_set").prefetch_related("match_set__candidates")
    for a, duration in zip(questions.order_by("position"), durations, strict=False):
        flow.question_served(participant=p, now=clock)
        clock += timedelta(seconds=float(duration))
        if a.is_attention_check:
            rank = a.attention_rank % k + 1 if careless else a.attention_rank
            picks, confidence = [rank], a.attention_confidence
        else:
            picks, confidence = _question_answer(
                match_set=a.match_set,
                k=k,
                careless=careless,
                intercepts=intercepts,
                identity_effect=identity_effect,
                participant_effect=participant_effect,
                identity_sd=identity_sd,
                conf_bias=conf_bias,
                rng=rng,
            )
        result = flow.response_record(
            participant=p,
            question=a,
            selected_photos=[a.photo_number(rank, k) for rank in picks],  # as a page posts
            none_selected=not picks,
            confidence=confidence,
            now=clock,
        )
        p = result.participant
        if p.is_finished:
            return p
    return flow.participant_finish(participant=p)


def _participant_to_questions(
    *, study: Study, pid: str, rng: np.random.Generator, py_rng: random.Random
) -> tuple[Participant, datetime, np.ndarray]:
    """Entry, consent and demographics; the participant, the clock at question 1, durations."""
    n_questions = study.question_count
    durations = rng.lognormal(np.log(12.0), 0.4, n_questions)  # seconds per question
    intro = float(rng.uniform(40, 120))  # consent, demographics, instructions
    # The timeline ends now, so that the survey's own finish time gives a plausible total.
    clock = timezone.now() - timedelta(seconds=intro + float(durations.sum()) + 20.0)
    p = flow.participant_enter(
        study=study,
        prolific_pid=pid,
        study_id=study.prolific_study_id or "SIMSTUDY",
        session_id=f"{pid}SESSION",
        user_agent="analysis.simulate_responses",
    )
    if p.step != Participant.Step.CONSENT:
        raise AnalysisError(f"{pid} already took part in '{study.slug}'.")
    flow.page_visit_record(participant=p, page=Participant.Step.CONSENT, now=clock)
    p = flow.participant_consent(participant=p, consent=True)
    p = flow.participant_demographics_save(
        participant=p,
        gender=py_rng.choice(Participant.Gender.values),
        age_group=py_rng.choice(Participant.AgeGroup.values),
    )
    p = flow.participant_start_questions(participant=p, rng=py_rng)
    return p, clock + timedelta(seconds=intro), durations


def _question_answer(
    *,
    match_set: MatchSet,
    k: int,
    careless: bool,
    intercepts: Mapping[str, float | None],
    identity_effect: dict[str, float],
    participant_effect: float,
    identity_sd: float,
    conf_bias: float,
    rng: np.random.Generator,
) -> tuple[list[int], int]:
    """Picked ranks and confidence on one real question (random when careless)."""
    ms = match_set
    true_ranks = [cand.rank for cand in ms.candidates.all() if cand.is_true]
    b = intercepts.get(ms.method)
    if careless:
        size = int(rng.integers(1, 4))
        picks = sorted(int(r) for r in rng.choice(k, size, replace=False) + 1)
        return picks, int(rng.integers(1, 6))
    if ms.target_identity not in identity_effect:
        identity_effect[ms.target_identity] = float(rng.normal(0.0, identity_sd))
    v = identity_effect[ms.target_identity]
    p_hit = None if b is None else float(special.expit(b + participant_effect + v))
    picks = _pick(rng, k, true_ranks, p_hit)
    latent = 0.5 + 0.8 * bool(set(picks) & set(true_ranks)) + conf_bias
    latent += float(rng.logistic())
    return picks, int(np.searchsorted(_CONF_THRESHOLDS, latent) + 1)
