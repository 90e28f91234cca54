"""Smallest detectable effects for a planned number of participants.

Analytic, for the tests this package runs on participant means:

* above chance: one-sided one-sample t test of (accuracy − chance) per method at ``alpha``;
* between methods: two-sided paired t test at ``alpha / n_comparisons`` (Bonferroni, the
  first and strictest step of Holm) — the GEE Wald tests used in the report behave alike
  with 100+ participants.

The SD of a participant's mean over ``q`` questions comes from the simulation model
(``analysis.simulation``): p = expit(b + u + v), u ~ N(0, participant_sd²) shared across
a participant's questions, v ~ N(0, identity_sd²) fresh per question, so
Var(ȳ) = Var_u(m(u)) + E_u[m(u)(1 − m(u))]/q with m(u) = E_v[expit(b + u + v)].
At chance the participant effect is absent (random picks). Power comes from the noncentral
t distribution. ``simulated_power`` checks the analytic answer with whole simulated studies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import optimize, special, stats

from analysis.chance import chance_tests
from analysis.outcomes import add_outcomes
from analysis.simulation import (
    QUAD_NODES,
    QUAD_WEIGHTS,
    SimulationConfig,
    logit_intercept,
    simulate_long_responses,
)


@dataclass(frozen=True)
class PowerResult:
    """Smallest detectable effects (at the requested power) for a planned study."""

    n_participants: int
    questions_per_method: int
    alpha: float
    power: float
    chance: float
    d_z_above_chance: float  # required standardised effect, one-sided test
    min_accuracy_above_chance: float  # smallest true accuracy detected above chance
    min_pp_above_chance: float
    comparison_baseline: float
    d_z_between_methods: float
    min_pp_between_methods: float  # smallest difference to comparison_baseline detected

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return asdict(self)


def required_d_z(n: int, alpha: float, power: float, two_sided: bool = False) -> float:
    """Standardised mean difference a one-sample t test with n detects at the given power."""
    df = n - 1
    a = alpha / 2 if two_sided else alpha
    t_crit = stats.t.ppf(1 - a, df)

    def gap(d: float) -> float:
        return float(stats.nct.sf(t_crit, df, d * np.sqrt(n)) - power)

    return float(optimize.brentq(gap, 1e-6, 20.0))


def _person_moments(accuracy: float, participant_sd: float, identity_sd: float) -> np.ndarray:
    """m(u) at the quadrature nodes of u, for a population-averaged accuracy."""
    b = logit_intercept(accuracy, float(np.hypot(participant_sd, identity_sd)))
    u = participant_sd * QUAD_NODES
    inner = special.expit(b + u[:, None] + identity_sd * QUAD_NODES[None, :])
    return inner @ QUAD_WEIGHTS


def participant_mean_sd(
    accuracy: float, q: int, participant_sd: float, identity_sd: float
) -> float:
    """SD of a participant's mean accuracy over q questions under the simulation model."""
    m = _person_moments(accuracy, participant_sd, identity_sd)
    mean = float(QUAD_WEIGHTS @ m)
    var_between = float(QUAD_WEIGHTS @ (m - mean) ** 2)
    var_within = float(QUAD_WEIGHTS @ (m * (1 - m))) / q
    return float(np.sqrt(var_between + var_within))


def _root(gap: Callable[[float], float], low: float, high: float) -> float:
    """Where ``gap`` crosses zero in [low, high]; NaN when it does not (too few participants)."""
    if gap(low) * gap(high) > 0:
        return float("nan")
    return float(optimize.brentq(gap, low, high))


def power(
    n_participants: int,
    questions_per_method: int = 5,
    chance: float = 0.2,
    alpha: float = 0.05,
    target_power: float = 0.8,
    participant_sd: float = 0.8,
    identity_sd: float = 0.5,
    comparison_baseline: float = 0.35,
    n_comparisons: int = 6,
) -> PowerResult:
    """Smallest accuracy above chance and smallest between-method gap detectable (analytic)."""
    q = questions_per_method
    d_chance = required_d_z(n_participants, alpha, target_power)

    def gap_chance(p: float) -> float:
        # Matched chance is a constant for single picks, so only ȳ varies.
        sd = participant_mean_sd(p, q, participant_sd, identity_sd)
        return (p - chance) / sd - d_chance

    min_acc = _root(gap_chance, chance + 1e-6, 0.999)

    d_pair = required_d_z(n_participants, alpha / n_comparisons, target_power, two_sided=True)
    m_base = _person_moments(comparison_baseline, participant_sd, identity_sd)

    def gap_pair(p: float) -> float:
        m = _person_moments(p, participant_sd, identity_sd)
        diff = m - m_base
        var = float(QUAD_WEIGHTS @ (diff - QUAD_WEIGHTS @ diff) ** 2)
        var += float(QUAD_WEIGHTS @ (m * (1 - m)) + QUAD_WEIGHTS @ (m_base * (1 - m_base))) / q
        return (p - comparison_baseline) / np.sqrt(var) - d_pair

    min_pair = _root(gap_pair, comparison_baseline + 1e-6, 0.999)
    return PowerResult(
        n_participants=n_participants,
        questions_per_method=q,
        alpha=alpha,
        power=target_power,
        chance=chance,
        d_z_above_chance=d_chance,
        min_accuracy_above_chance=min_acc,
        min_pp_above_chance=100 * (min_acc - chance),
        comparison_baseline=comparison_baseline,
        d_z_between_methods=d_pair,
        min_pp_between_methods=100 * (min_pair - comparison_baseline),
    )


def simulated_power(
    accuracy: float,
    n_participants: int,
    n_studies: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
    config: SimulationConfig | None = None,
) -> float:
    """Share of simulated studies in which one method at ``accuracy`` tests above chance."""
    base = config or SimulationConfig()
    cfg = replace(
        base,
        n_participants=n_participants,
        accuracies=(("target", accuracy),),
        p_target_absent=0.0,
        p_none_when_unsure=0.0,
        attention_items=0,
        returned_share=0.0,
    )
    hits = 0
    for s in range(n_studies):
        df = add_outcomes(simulate_long_responses(cfg, seed + s))
        hits += chance_tests(df)[0].p_greater < alpha
    return hits / n_studies
