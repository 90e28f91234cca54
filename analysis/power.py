"""Power of the report's default (crossed) tests, for planned participants *and* faces.

The report's tests (``analysis.crossed``) treat participants and faces as samples, so a
study's precision depends on both: each face is shown to many participants, and a pool of
20 faces per method cannot pin a method's accuracy down however many people look at it.

Model (``analysis.simulation``): p = expit(b + u + v), u ~ N(0, participant_sd²) per
participant, v ~ N(0, face_sd²) per face (match set), b solved so that the population accuracy
E[p] is the stated one. With P participants answering q questions per method (N = P·q
responses) over F faces per method, the pooled accuracy's variance is

    Var = σ²_P / P + σ²_F / F + (σ²_PF + E[p(1 − p)]) / N,

with σ²_P = Var_u(E_v p), σ²_F = Var_v(E_u p) and σ²_PF the interaction (Gauss–Hermite
quadrature). Tests use t(G − 1), G = min(P, F), as the report does: one-sided above chance at
``alpha``; between two methods two-sided at ``alpha / n_comparisons`` (Bonferroni, the first
and strictest step of Holm), with the participant effect shared by both methods and each
method's face effects independent (a conservative reading). Power comes from the noncentral t
distribution; ``simulated_power`` checks it with whole simulated studies analysed by the
report's crossed test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import optimize, special, stats

from analysis.crossed import chance_tests_crossed, fit_crossed
from analysis.estimates import present_responses
from analysis.outcomes import add_outcomes
from analysis.simulation import (
    QUAD_NODES,
    QUAD_WEIGHTS,
    SimulationConfig,
    logit_intercept,
    simulate_long_responses,
)

DEFAULT_PARTICIPANT_SD = 0.8
DEFAULT_FACE_SD = 0.6


@dataclass(frozen=True)
class VarianceParts:
    """Where a method's pooled accuracy gets its variance from (proportion² units)."""

    participants: float  # σ²_P / P
    faces: float  # σ²_F / F
    residual: float  # (σ²_PF + E[p(1 − p)]) / N

    @property
    def total(self) -> float:
        """Variance of the pooled accuracy."""
        return self.participants + self.faces + self.residual

    @property
    def faces_bottleneck(self) -> bool:
        """The face pool contributes more variance than everything else together."""
        return self.faces > self.participants + self.residual


@dataclass(frozen=True)
class PowerResult:
    """Smallest detectable effects (at the requested power) for a planned study."""

    n_participants: int
    questions_per_method: int
    faces_per_method: int
    alpha: float
    power: float
    chance: float
    participant_sd: float
    face_sd: float
    df: int  # t(G − 1), G = min(participants, faces)
    min_accuracy_above_chance: float  # smallest true accuracy detected above chance
    min_pp_above_chance: float
    comparison_baseline: float
    min_pp_between_methods: float  # smallest difference to comparison_baseline detected
    share_of_variance_from_faces: float  # at the smallest detectable accuracy above chance
    faces_bottleneck: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        """Plain dict for JSON."""
        return asdict(self)


def _grid(accuracy: float, participant_sd: float, face_sd: float) -> np.ndarray:
    """p(u, v) at the quadrature nodes: rows participants' u, columns faces' v."""
    b = logit_intercept(accuracy, float(np.hypot(participant_sd, face_sd)))
    return special.expit(b + participant_sd * QUAD_NODES[:, None] + face_sd * QUAD_NODES[None, :])


def _var(values: np.ndarray) -> float:
    mean = float(QUAD_WEIGHTS @ values)
    return float(QUAD_WEIGHTS @ (values - mean) ** 2)


def variance_parts(
    accuracy: float,
    n_participants: int,
    questions_per_method: int,
    faces_per_method: int,
    participant_sd: float = DEFAULT_PARTICIPANT_SD,
    face_sd: float = DEFAULT_FACE_SD,
) -> VarianceParts:
    """Variance of a method's pooled accuracy, split into participant, face and residual."""
    grid = _grid(accuracy, participant_sd, face_sd)
    n = n_participants * questions_per_method
    faces = min(faces_per_method, n)  # a face nobody sees adds nothing
    by_person = grid @ QUAD_WEIGHTS
    by_face = QUAD_WEIGHTS @ grid
    mean = float(QUAD_WEIGHTS @ by_person)
    var_cells = float(QUAD_WEIGHTS @ (grid - mean) ** 2 @ QUAD_WEIGHTS)
    var_p, var_f = _var(by_person), _var(by_face)
    bernoulli = float(QUAD_WEIGHTS @ (grid * (1 - grid)) @ QUAD_WEIGHTS)
    return VarianceParts(
        participants=var_p / n_participants,
        faces=var_f / faces,
        residual=(max(var_cells - var_p - var_f, 0.0) + bernoulli) / n,
    )


def _difference_variance(
    a: float, b: float, n_participants: int, q: int, faces: int, sd_p: float, sd_f: float
) -> float:
    """Variance of the difference of two methods' pooled accuracies (shared participants)."""
    grid_a, grid_b = _grid(a, sd_p, sd_f), _grid(b, sd_p, sd_f)
    shared = _var(grid_a @ QUAD_WEIGHTS - grid_b @ QUAD_WEIGHTS) / n_participants
    parts_a = variance_parts(a, n_participants, q, faces, sd_p, sd_f)
    parts_b = variance_parts(b, n_participants, q, faces, sd_p, sd_f)
    return shared + parts_a.faces + parts_b.faces + parts_a.residual + parts_b.residual


def t_test_power(effect: float, se: float, df: int, alpha: float, two_sided: bool = False) -> float:
    """Power of a t(df) test of H0: effect = 0 when the estimate has standard error ``se``."""
    a = alpha / 2 if two_sided else alpha
    crit = stats.t.ppf(1 - a, df)
    delta = effect / se
    if delta > 40:  # far beyond any critical value (and beyond scipy's nct accuracy)
        return 1.0
    upper = float(stats.nct.sf(crit, df, delta))
    lower = float(stats.nct.cdf(-crit, df, delta)) if two_sided else 0.0
    return upper + (lower if np.isfinite(lower) else 0.0)  # scipy's tail is NaN far out


def _root(gap: Callable[[float], float], low: float, high: float) -> float:
    """Where ``gap`` crosses zero in [low, high]; NaN when it does not (too small a study)."""
    if gap(low) * gap(high) > 0:
        return float("nan")
    return float(optimize.brentq(gap, low, high))


def power(
    n_participants: int,
    questions_per_method: int = 5,
    faces_per_method: int = 50,
    chance: float = 0.2,
    alpha: float = 0.05,
    target_power: float = 0.8,
    participant_sd: float = DEFAULT_PARTICIPANT_SD,
    face_sd: float = DEFAULT_FACE_SD,
    comparison_baseline: float = 0.35,
    n_comparisons: int = 6,
) -> PowerResult:
    """Smallest accuracy above chance and smallest between-method gap detectable (analytic)."""
    q, faces = questions_per_method, faces_per_method
    df = max(min(n_participants, faces) - 1, 1)

    def se(p: float) -> float:
        parts = variance_parts(p, n_participants, q, faces, participant_sd, face_sd)
        return float(np.sqrt(parts.total))

    def gap_chance(p: float) -> float:
        return t_test_power(p - chance, se(p), df, alpha) - target_power

    min_acc = _root(gap_chance, chance + 1e-4, 0.99)

    def gap_pair(p: float) -> float:
        var = _difference_variance(
            p, comparison_baseline, n_participants, q, faces, participant_sd, face_sd
        )
        effect = p - comparison_baseline
        return (
            t_test_power(effect, float(np.sqrt(var)), df, alpha / n_comparisons, two_sided=True)
            - target_power
        )

    min_pair = _root(gap_pair, comparison_baseline + 1e-4, 0.99)
    at = min_acc if np.isfinite(min_acc) else 0.5
    parts = variance_parts(at, n_participants, q, faces, participant_sd, face_sd)
    return PowerResult(
        n_participants=n_participants,
        questions_per_method=q,
        faces_per_method=faces,
        alpha=alpha,
        power=target_power,
        chance=chance,
        participant_sd=participant_sd,
        face_sd=face_sd,
        df=df,
        min_accuracy_above_chance=min_acc,
        min_pp_above_chance=100 * (min_acc - chance),
        comparison_baseline=comparison_baseline,
        min_pp_between_methods=100 * (min_pair - comparison_baseline),
        share_of_variance_from_faces=parts.faces / parts.total,
        faces_bottleneck=parts.faces_bottleneck,
    )


def power_above_chance(
    accuracy: float,
    n_participants: int,
    questions_per_method: int = 5,
    faces_per_method: int = 50,
    chance: float = 0.2,
    alpha: float = 0.05,
    participant_sd: float = DEFAULT_PARTICIPANT_SD,
    face_sd: float = DEFAULT_FACE_SD,
) -> float:
    """Power of the crossed one-sided test for a method whose population accuracy is given."""
    parts = variance_parts(
        accuracy, n_participants, questions_per_method, faces_per_method, participant_sd, face_sd
    )
    df = max(min(n_participants, faces_per_method) - 1, 1)
    return t_test_power(accuracy - chance, float(np.sqrt(parts.total)), df, alpha)


def simulated_power(
    accuracy: float,
    n_participants: int,
    faces_per_method: int = 50,
    n_studies: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
    config: SimulationConfig | None = None,
) -> float:
    """Share of simulated studies in which one method at ``accuracy`` tests above chance."""
    base = config or SimulationConfig(identity_sd=DEFAULT_FACE_SD)
    cfg = replace(
        base,
        n_participants=n_participants,
        items_per_method=faces_per_method,
        accuracies=(("target", accuracy),),
        p_target_absent=0.0,
        p_none_when_unsure=0.0,
        attention_items=0,
        returned_share=0.0,
    )
    hits = 0
    for s in range(n_studies):
        present = present_responses(add_outcomes(simulate_long_responses(cfg, seed + s)))
        hits += chance_tests_crossed(fit_crossed(present))[0].p_greater < alpha
    return hits / n_studies


def planning_lines(
    *,
    n_participants: int,
    faces_per_method: int,
    questions_per_method: int = 5,
    k: int = 5,
    alpha: float = 0.05,
    target_power: float = 0.8,
    participant_sd: float = DEFAULT_PARTICIPANT_SD,
    face_sd: float = DEFAULT_FACE_SD,
) -> tuple[list[str], bool]:
    """What a planned study can detect, as lines for a command, and whether to warn.

    The warning is due when faces are the bottleneck: then more match sets, not more
    participants, would narrow the intervals.
    """

    def plan(participants: int, faces: int) -> PowerResult:
        return power(
            participants,
            questions_per_method=questions_per_method,
            faces_per_method=faces,
            chance=1 / k,
            alpha=alpha,
            target_power=target_power,
            participant_sd=participant_sd,
            face_sd=face_sd,
        )

    result = plan(n_participants, faces_per_method)
    more_faces = plan(n_participants, 2 * faces_per_method)
    more_people = plan(2 * n_participants, faces_per_method)

    def pp(value: float) -> str:
        return "no effect short of 99% accuracy" if np.isnan(value) else f"{value:.1f} pp"

    lines = [
        f"Power ({target_power:.0%}, alpha {alpha}, the report's crossed tests; participant SD "
        f"{participant_sd}, face SD {face_sd} on the logit scale): with {n_participants} "
        f"participants and {faces_per_method} faces per method the study detects accuracy "
        f"{pp(result.min_pp_above_chance)} above chance and {pp(result.min_pp_between_methods)} "
        "between two methods.",
        f"Faces carry {result.share_of_variance_from_faces:.0%} of the variance. Doubling the "
        f"faces: {pp(more_faces.min_pp_above_chance)} above chance; doubling the participants: "
        f"{pp(more_people.min_pp_above_chance)}.",
    ]
    if result.faces_bottleneck:
        lines.append(
            f"WARNING: faces are the bottleneck with {faces_per_method} faces per method: more "
            "match sets (e.g. --per-method), not more participants, would narrow the intervals."
        )
    return lines, result.faces_bottleneck
