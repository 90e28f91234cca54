"""Simulated survey responses in the long export format, with known true accuracies.

Model: on a target-present question of method ``j``, an attentive participant ``i``
recognises the target of item ``t`` with probability ``expit(b_j + u_i + v_t)``, where
``u_i ~ N(0, participant_sd²)`` and ``v_t ~ N(0, identity_sd²)`` are logit-scale
participant and identity effects. ``b_j`` is solved so that the *population-averaged*
accuracy equals the stated one (the estimand of GEE and of the pooled proportion). A method
given as ``None`` is exactly at chance: every pick is uniform among the K candidates.

Behaviours: attentive participants pick one candidate (a true one when they recognise the
target, a wrong one or "none" otherwise) or, with ``multi_pick_rate``, two. Careless
types — random guessers (random pick size), tick-all-K, speeders, straight-liners and
inattentive participants who fail attention checks — are mixed in by share. Seeded; the
truth is stored in ``df.attrs["truth"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import optimize, special

from analysis import columns as c
from analysis.chance import matched_chance

QUAD_NODES, QUAD_WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
QUAD_WEIGHTS = QUAD_WEIGHTS / QUAD_WEIGHTS.sum()
_START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
_CONF_THRESHOLDS = np.array([-1.2, 0.0, 1.0, 2.0])


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; defaults give a clean study shaped like the paper's (200 × 20)."""

    n_participants: int = 200
    # (method, population-averaged accuracy on target-present questions); None = at chance.
    accuracies: tuple[tuple[str, float | None], ...] = (
        ("eigenfaces", 0.50),
        ("nbnet", 0.35),
        ("naive", None),
        ("vec2face", 0.40),
    )
    questions_per_method: int = 5
    items_per_method: int = 50  # match sets per method; item t of every method shares identity t
    k: int = 5
    participant_sd: float = 0.8  # logit scale
    identity_sd: float = 0.5  # logit scale
    p_target_absent: float = 0.1  # share of items whose top-K lacks the target
    p_two_true: float = 0.0  # share of target-present items with two true candidates
    p_none_when_unsure: float = 0.3  # attentive, not recognised: answer "none" (else a wrong pick)
    multi_pick_rate: float = 0.0  # attentive responses that pick two candidates
    attention_items: int = 2
    attention_pass_rate: float = 0.97  # per item, attentive participants
    max_attention_failures: int = 2  # the survey ends the session at this many failures
    random_guesser_share: float = 0.0
    guesser_max_picks: int = 3  # guessers pick 1..this many at random
    tick_all_share: float = 0.0
    speeder_share: float = 0.0
    straightliner_share: float = 0.0
    inattentive_share: float = 0.0  # random answers, attention items passed with 0.3
    returned_share: float = 0.02  # leave midway (missing at random)
    confidence_slope: float = 0.8  # logit-scale shift of the confidence latent when correct
    study: str = "simulated"

    @classmethod
    def messy(cls, **overrides: object) -> SimulationConfig:
        """A study with every kind of careless participant, for exclusion and report checks."""
        base = cls(
            random_guesser_share=0.04,
            tick_all_share=0.02,
            speeder_share=0.03,
            straightliner_share=0.03,
            inattentive_share=0.04,
            multi_pick_rate=0.1,
            p_two_true=0.1,
            returned_share=0.03,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in the order given."""
        return tuple(name for name, _ in self.accuracies)


def logit_intercept(accuracy: float, sd: float) -> float:
    """Logit-scale intercept b with E[expit(b + N(0, sd²))] = accuracy (Gauss–Hermite)."""
    if sd <= 0:
        return float(special.logit(accuracy))

    def gap(b: float) -> float:
        return float(np.sum(QUAD_WEIGHTS * special.expit(b + sd * QUAD_NODES)) - accuracy)

    return float(optimize.brentq(gap, -20.0, 20.0))


def _mean_expit(b: np.ndarray, sd: float) -> np.ndarray:
    """E[expit(b + N(0, sd²))] elementwise."""
    return np.sum(QUAD_WEIGHTS * special.expit(b[..., None] + sd * QUAD_NODES), axis=-1)


@dataclass(frozen=True)
class _StudyDraws:
    """The study-level draws every participant's answers depend on."""

    identity_effect: np.ndarray  # (n_items,) logit-scale identity effects
    n_true: np.ndarray  # (n_methods, n_items) true candidates per match set
    true_ranks: list[list[tuple[int, ...]]]  # [method][item] ranks of the true candidates
    intercepts: dict[str, float | None]
    kinds: list[str]  # behaviour type per participant
    participant_effect: np.ndarray  # (n_participants,)
    conf_bias: np.ndarray  # (n_participants,)
    conf_shift: dict[str, float]
    offsets: np.ndarray  # (n_methods,) first item each method serves
    present_counts: np.ndarray  # (n_methods, n_items) target-present answers, filled in


def simulate_long_responses(config: SimulationConfig | None = None, seed: int = 0) -> pd.DataFrame:
    """Simulate one study's long export; truths in ``attrs["truth"]`` (see module docstring)."""
    cfg = config or SimulationConfig()
    rng = np.random.default_rng(seed)
    draws = _study_draws(cfg, rng)
    rows: list[dict[str, object]] = []
    for i in range(cfg.n_participants):
        rows += _participant_rows(i, draws, cfg, rng)
    df = pd.DataFrame(rows, columns=list(c.EXPORT_COLUMNS))
    df[c.ATTENTION_PASSED] = df[c.ATTENTION_PASSED].astype("boolean")
    df.attrs["truth"] = _truth(
        cfg, draws.intercepts, draws.identity_effect, draws.n_true, draws.present_counts
    )
    df.attrs["seed"] = seed
    return df


def _study_draws(cfg: SimulationConfig, rng: np.random.Generator) -> _StudyDraws:
    """Items, intercepts and participant effects, drawn in a fixed order."""
    methods = cfg.methods
    n_items, k = cfg.items_per_method, cfg.k
    total_sd = float(np.hypot(cfg.participant_sd, cfg.identity_sd))
    identity_effect = rng.normal(0.0, cfg.identity_sd, n_items)
    # Per method and item: how many of the K candidates are true, and which ranks.
    n_true = np.where(
        rng.random((len(methods), n_items)) < cfg.p_target_absent,
        0,
        np.where(rng.random((len(methods), n_items)) < cfg.p_two_true, 2, 1),
    )
    true_ranks = [
        [tuple(sorted(rng.choice(k, size=n_true[j, t], replace=False) + 1)) for t in range(n_items)]
        for j in range(len(methods))
    ]
    intercepts = {
        name: (logit_intercept(acc, total_sd) if acc is not None else None)
        for name, acc in cfg.accuracies
    }
    kinds = _participant_kinds(cfg, rng)
    participant_effect = rng.normal(0.0, cfg.participant_sd, cfg.n_participants)
    conf_bias = rng.normal(0.0, 0.7, cfg.n_participants)
    conf_shift = dict(zip(methods, rng.normal(0.5, 0.3, len(methods)), strict=True))
    offsets = rng.integers(0, n_items, len(methods))
    return _StudyDraws(
        identity_effect=identity_effect,
        n_true=n_true,
        true_ranks=true_ranks,
        intercepts=intercepts,
        kinds=kinds,
        participant_effect=participant_effect,
        conf_bias=conf_bias,
        conf_shift=conf_shift,
        offsets=offsets,
        present_counts=np.zeros((len(methods), n_items)),
    )


def _question_order(
    i: int, draws: _StudyDraws, cfg: SimulationConfig, rng: np.random.Generator
) -> list[tuple[int, int] | None]:
    """Participant ``i``'s (method, item) questions, shuffled, with attention items (None)."""
    questions = [
        (j, int((draws.offsets[j] + i * cfg.questions_per_method + q) % cfg.items_per_method))
        for j in range(len(cfg.methods))
        for q in range(cfg.questions_per_method)
    ]
    order: list[tuple[int, int] | None] = [questions[q] for q in rng.permutation(len(questions))]
    for _ in range(cfg.attention_items):
        order.insert(int(rng.integers(1, len(order) + 1)), None)
    return order


def _participant_rows(
    i: int, draws: _StudyDraws, cfg: SimulationConfig, rng: np.random.Generator
) -> list[dict[str, object]]:
    """One participant's responses, from the first question to completion or leaving."""
    kind = draws.kinds[i]
    pid = f"P{i:04d}"
    order = _question_order(i, draws, cfg, rng)
    stop_at = len(order)
    status = c.STATUS_COMPLETED
    if rng.random() < cfg.returned_share:
        stop_at = int(rng.integers(1, len(order)))
        status = c.STATUS_RETURNED
    fixed_conf = int(rng.integers(1, 6))
    clock = _START + timedelta(minutes=float(rng.uniform(0, 600)))
    consent_at = clock
    clock += timedelta(seconds=float(rng.uniform(40, 120)))  # consent, demographics, intro
    failures = 0
    rows: list[dict[str, object]] = []
    for pos, item in enumerate(order[:stop_at], start=1):
        fast = kind == "speeder"
        duration = float(rng.lognormal(np.log(2.0 if fast else 12.0), 0.4))
        served = clock
        clock += timedelta(seconds=duration)
        row: dict[str, object] = {
            c.PARTICIPANT: pid,
            c.STUDY: cfg.study,
            c.POSITION: pos,
            c.K: cfg.k,
            c.SERVED_AT: served.isoformat(),
            c.ANSWERED_AT: clock.isoformat(),
            c.DURATION_S: duration,
            c.IS_FAST: duration < 3.0,
        }
        rows.append(row)
        if item is None:
            failures += not _fill_attention(row, kind, cfg, rng)
            if failures >= cfg.max_attention_failures:
                status = c.STATUS_FAILED_ATTENTION
                break
            continue
        _fill_question(row, i, item, fixed_conf, draws, cfg, rng)
    finished = status == c.STATUS_COMPLETED
    total = (clock - consent_at).total_seconds() + 20.0 if finished else np.nan
    for row in rows:
        row[c.PARTICIPANT_STATUS] = status
        row[c.PARTICIPANT_TOTAL_S] = total
    return rows


def _fill_attention(
    row: dict[str, object], kind: str, cfg: SimulationConfig, rng: np.random.Generator
) -> bool:
    """Answer an attention item into ``row``; whether it was passed."""
    methods, k = cfg.methods, cfg.k
    pass_rate = 0.3 if kind in ("inattentive", "guesser") else cfg.attention_pass_rate
    passed = bool(rng.random() < pass_rate)
    picks = (3,) if passed else (int(rng.integers(1, k + 1)),)
    row.update(
        {
            c.METHOD: methods[int(rng.integers(len(methods)))],
            c.MATCH_SET: "attention",
            c.TARGET_IDENTITY: "attention",
            c.IS_ATTENTION_CHECK: True,
            c.ATTENTION_PASSED: passed,
            c.N_TRUE: 0,
            c.CONFIDENCE: 5 if passed else int(rng.integers(1, 6)),
        }
    )
    _fill_picks(row, picks, ())
    return passed


def _fill_question(
    row: dict[str, object],
    i: int,
    item: tuple[int, int],
    fixed_conf: int,
    draws: _StudyDraws,
    cfg: SimulationConfig,
    rng: np.random.Generator,
) -> None:
    """Answer participant ``i``'s question on ``item`` (method, item index) into ``row``."""
    kind = draws.kinds[i]
    j, t = item
    method = cfg.methods[j]
    truth = draws.true_ranks[j][t]
    if truth:
        draws.present_counts[j, t] += 1
    picks = _answer(
        kind,
        draws.intercepts[method],
        draws.participant_effect[i],
        draws.identity_effect[t],
        truth,
        cfg,
        rng,
    )
    correct = bool(set(picks) & set(truth))
    latent = (
        draws.conf_shift[method]
        + cfg.confidence_slope * correct
        + draws.conf_bias[i]
        + rng.logistic(0.0, 1.0)
    )
    confidence = int(np.searchsorted(_CONF_THRESHOLDS, latent) + 1)
    if kind in ("straightliner", "tick_all"):
        confidence = fixed_conf
    row.update(
        {
            c.METHOD: method,
            c.MATCH_SET: f"{method}-{t:03d}",
            c.TARGET_IDENTITY: f"id{t:03d}",
            c.IS_ATTENTION_CHECK: False,
            c.ATTENTION_PASSED: pd.NA,
            c.N_TRUE: len(truth),
            c.CONFIDENCE: confidence,
        }
    )
    _fill_picks(row, picks, truth)


def _participant_kinds(cfg: SimulationConfig, rng: np.random.Generator) -> list[str]:
    """Assign each participant a behaviour type by the configured shares."""
    shares = {
        "guesser": cfg.random_guesser_share,
        "tick_all": cfg.tick_all_share,
        "speeder": cfg.speeder_share,
        "straightliner": cfg.straightliner_share,
        "inattentive": cfg.inattentive_share,
    }
    kinds: list[str] = []
    for name, share in shares.items():
        kinds += [name] * round(share * cfg.n_participants)
    kinds += ["attentive"] * (cfg.n_participants - len(kinds))
    return [kinds[q] for q in rng.permutation(cfg.n_participants)]


def _answer(
    kind: str,
    intercept: float | None,
    u: float,
    v: float,
    truth: tuple[int, ...],
    cfg: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[int, ...]:
    """Picked ranks for one question."""
    k = cfg.k
    ranks = np.arange(1, k + 1)
    if kind == "tick_all":
        return tuple(ranks.tolist())
    if kind in ("guesser", "speeder", "inattentive"):
        size = int(rng.integers(1, cfg.guesser_max_picks + 1))
        return tuple(sorted(rng.choice(ranks, size=size, replace=False).tolist()))
    size = 2 if rng.random() < cfg.multi_pick_rate else 1
    if intercept is None:  # method at chance: pure random picks
        return tuple(sorted(rng.choice(ranks, size=size, replace=False).tolist()))
    wrong = [r for r in ranks.tolist() if r not in truth]
    if not truth:
        if rng.random() < cfg.p_none_when_unsure:
            return ()
        return tuple(sorted(rng.choice(wrong, size=size, replace=False).tolist()))
    p = float(special.expit(intercept + u + v))
    if rng.random() < p:
        first = int(rng.choice(truth))
        rest = [r for r in ranks.tolist() if r != first]
        extra = rng.choice(rest, size=size - 1, replace=False).tolist()
        return tuple(sorted([first, *extra]))
    if rng.random() < cfg.p_none_when_unsure:
        return ()
    return tuple(sorted(rng.choice(wrong, size=size, replace=False).tolist()))


def _fill_picks(row: dict[str, object], picks: tuple[int, ...], truth: tuple[int, ...]) -> None:
    """Write the selection columns of one response."""
    n_correct = len(set(picks) & set(truth))
    row[c.SELECTED_RANKS] = ";".join(str(r) for r in picks)
    row[c.N_SELECTED] = len(picks)
    row[c.NONE_SELECTED] = len(picks) == 0
    row[c.N_CORRECT] = n_correct
    row[c.ANY_CORRECT] = n_correct > 0


def _truth(
    cfg: SimulationConfig,
    intercepts: dict[str, float | None],
    identity_effect: np.ndarray,
    n_true: np.ndarray,
    present_counts: np.ndarray,
) -> dict[str, dict[str, float]]:
    """True accuracy per method: marginal (new items) and given the simulated items."""
    marginal: dict[str, float] = {}
    given_items: dict[str, float] = {}
    k = cfg.k
    for j, (name, acc) in enumerate(cfg.accuracies):
        weights = present_counts[j]
        if acc is None:
            sizes = ((1, 1.0 - cfg.multi_pick_rate), (2, cfg.multi_pick_rate))
            marginal[name] = sum(
                pm * ps * float(matched_chance(k, m, s))
                for m, pm in ((1, 1.0 - cfg.p_two_true), (2, cfg.p_two_true))
                for s, ps in sizes
            )
            per_item = sum(ps * matched_chance(k, n_true[j], s) for s, ps in sizes)
        else:
            marginal[name] = float(acc)
            b = intercepts[name]
            assert b is not None
            per_item = _mean_expit(b + identity_effect, cfg.participant_sd)
        given_items[name] = float(np.sum(weights * per_item) / max(weights.sum(), 1.0))
    return {"marginal": marginal, "given_items": given_items}
