"""Crossed participant × face inference: the report's default intervals and tests.

A study shows each face (a target identity's match set) to many participants, and both are
samples: a researcher who writes "people re-identify X% of reconstructions" means new people
looking at new faces, not these faces. The estimand is therefore the population accuracy
E_{participant, face}[P(≥ 1 true match selected)] per method, and every default interval and
test here treats participants *and* faces as random.

Estimator (one for every number a sentence of the report quotes):

* point estimates are pooled proportions: accuracy = Σ correct / Σ answered per method, and
  the gap to chance = Σ (correct − matched chance) / Σ answered;
* their covariance is two-way cluster-robust (Cameron, Gelbach & Miller 2011):
  V = c_P·S_P + c_F·S_F − c_PF·S_PF, where S_G sums the outer products of the
  cluster-summed influence values over the clusters of G (participants; faces = target
  identities, so a target shown under several methods is one cluster and correlations
  between methods through the same face are kept; their intersections), with the CR1
  small-sample factor c_G = G / (G − 1);
* critical values and p-values come from t(G − 1) with G = min(participants, faces) involved
  (few faces ⇒ few effective clusters ⇒ wide intervals, as they should be);
* accuracy intervals are computed on the logit scale (they stay inside [0, 1]); gaps to
  chance and between methods on the percentage-point scale.

Why this and not the alternatives: statsmodels fits crossed random-effects logit models only
by variational Bayes (``analysis.variability``), whose posteriors understate uncertainty and
whose intercepts are conditional, not population accuracies; a two-way ("pigeonhole")
bootstrap counts the residual variance twice (conservative) and costs thousands of refits.
Coverage of these intervals against the population truth is measured by
``benchmarks/analysis_coverage.py`` (participant SD 0.8, face SD 0.6, 20- and 100-face pools).

The participant-only results (GEE, participant bootstrap, t tests on participant means) stay
in the report, labelled "conditional on these faces".
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from analysis import columns as c

SMALL_FACE_POOL = 30  # fewer faces per method than this: the report warns


@dataclass(frozen=True)
class CrossedFit:
    """Pooled accuracy and gap to matched chance per method, with two-way covariance.

    ``params`` stacks the accuracies (first ``len(methods)``) and the gaps to chance (next
    ``len(methods)``); ``cov`` is their two-way cluster-robust covariance.
    """

    methods: tuple[str, ...]
    params: np.ndarray  # (2M,) accuracy per method, then accuracy − matched chance
    cov: np.ndarray  # (2M, 2M)
    one_way: dict[str, np.ndarray]  # "participant" / "face": the one-way parts (with c_G)
    n_responses: np.ndarray  # (M,)
    n_participants: np.ndarray  # (M,) participants answering the method
    n_faces: np.ndarray  # (M,) distinct target identities of the method
    matched_chance: np.ndarray  # (M,) pooled matched chance
    participant_ids: tuple[frozenset[str], ...]
    face_ids: tuple[frozenset[str], ...]

    @property
    def accuracy(self) -> np.ndarray:
        """Pooled accuracy per method."""
        return self.params[: len(self.methods)]

    @property
    def gap(self) -> np.ndarray:
        """Pooled accuracy − pooled matched chance per method."""
        return self.params[len(self.methods) :]

    def variance(self, gradient: np.ndarray) -> float:
        """Variance of ``gradient @ params``; falls back to the larger one-way part if ≤ 0."""
        var = float(gradient @ self.cov @ gradient)
        if var > 0:
            return var
        # CGM's difference of sums can go negative in small samples (rare); the larger
        # one-way variance is then the conservative choice.
        return max(float(gradient @ part @ gradient) for part in self.one_way.values())

    def df(self, *methods: int) -> int:
        """Degrees of freedom, G − 1, for a quantity involving these methods."""
        people = frozenset().union(*(self.participant_ids[j] for j in methods))
        faces = frozenset().union(*(self.face_ids[j] for j in methods))
        return max(min(len(people), len(faces)) - 1, 1)


def _cluster_outer(psi: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Σ over clusters of (Σ_in-cluster ψ)(Σ ψ)ᵀ, and the number of clusters."""
    codes = pd.factorize(keys)[0]
    n_groups = int(codes.max()) + 1
    sums = np.zeros((n_groups, psi.shape[1]))
    np.add.at(sums, codes, psi)
    return sums.T @ sums, n_groups


def _small_sample(outer: np.ndarray, groups: int) -> np.ndarray:
    """CR1: scale by G / (G − 1)."""
    return outer * (groups / (groups - 1)) if groups > 1 else outer


def fit_crossed(present: pd.DataFrame, methods: tuple[str, ...] | None = None) -> CrossedFit:
    """Pooled accuracy and gap to chance per method with two-way cluster-robust covariance.

    ``present``: target-present, non-attention responses (``estimates.present_responses``).
    """
    methods = methods or tuple(sorted(present[c.METHOD].unique()))
    m = len(methods)
    method_of = present[c.METHOD].to_numpy()
    y = present[c.ANY_CORRECT].to_numpy(dtype=float)
    d = y - present[c.MATCHED_CHANCE].to_numpy(dtype=float)
    participants = present[c.PARTICIPANT].astype(str).to_numpy()
    faces = present[c.TARGET_IDENTITY].astype(str).to_numpy()
    psi = np.zeros((len(y), 2 * m))
    params = np.zeros(2 * m)
    counts = np.zeros(m, dtype=int)
    chance = np.zeros(m)
    for j, method in enumerate(methods):
        mask = method_of == method
        n = int(mask.sum())
        counts[j] = n
        params[j] = y[mask].mean()
        params[m + j] = d[mask].mean()
        chance[j] = params[j] - params[m + j]
        psi[mask, j] = (y[mask] - params[j]) / n
        psi[mask, m + j] = (d[mask] - params[m + j]) / n
    s_p, g_p = _cluster_outer(psi, participants)
    s_f, g_f = _cluster_outer(psi, faces)
    s_pf, g_pf = _cluster_outer(psi, participants + "\x1f" + faces)
    v_p, v_f = _small_sample(s_p, g_p), _small_sample(s_f, g_f)
    cov = v_p + v_f - _small_sample(s_pf, g_pf)
    return CrossedFit(
        methods=methods,
        params=params,
        cov=cov,
        one_way={"participant": v_p, "face": v_f},
        n_responses=counts,
        n_participants=np.array([len(set(participants[method_of == x])) for x in methods]),
        n_faces=np.array([len(set(faces[method_of == x])) for x in methods]),
        matched_chance=chance,
        participant_ids=tuple(frozenset(participants[method_of == x]) for x in methods),
        face_ids=tuple(frozenset(faces[method_of == x]) for x in methods),
    )


def _t_crit(level: float, df: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2, df))


def accuracy_intervals(fit: CrossedFit, level: float = 0.95) -> pd.DataFrame:
    """Per method: pooled accuracy with its logit-scale two-way interval, t(G − 1)."""
    rows = []
    m = len(fit.methods)
    for j, method in enumerate(fit.methods):
        p = float(fit.accuracy[j])
        grad = np.zeros(2 * m)
        grad[j] = 1.0
        se = float(np.sqrt(fit.variance(grad)))
        df = fit.df(j)
        if 0.0 < p < 1.0:
            half = _t_crit(level, df) * se / (p * (1 - p))
            low, high = special.expit(special.logit(p) + np.array([-half, half]))
        else:  # every answer right (or wrong): no spread to estimate from
            low = high = p
        rows.append(
            {
                "method": method,
                "accuracy": p,
                "se": se,
                "ci_low": float(low),
                "ci_high": float(high),
                "df": df,
                "n_faces": int(fit.n_faces[j]),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CrossedChanceTest:
    """Accuracy − matched chance for one method, crossed over participants and faces."""

    method: str
    accuracy: float  # pooled
    matched_chance: float  # pooled
    difference: float  # accuracy − matched chance (proportion)
    se: float
    ci_low: float
    ci_high: float
    t: float
    df: int
    p_greater: float  # one-sided: above chance
    p_two_sided: float
    n_participants: int
    n_faces: int


def chance_tests_crossed(fit: CrossedFit, level: float = 0.95) -> list[CrossedChanceTest]:
    """One-sided t(G − 1) test of pooled accuracy − matched chance per method."""
    out = []
    m = len(fit.methods)
    for j, method in enumerate(fit.methods):
        grad = np.zeros(2 * m)
        grad[m + j] = 1.0
        se = float(np.sqrt(fit.variance(grad)))
        diff = float(fit.gap[j])
        df = fit.df(j)
        t_val = diff / se if se > 0 else float("nan")
        half = _t_crit(level, df) * se
        out.append(
            CrossedChanceTest(
                method=method,
                accuracy=float(fit.accuracy[j]),
                matched_chance=float(fit.matched_chance[j]),
                difference=diff,
                se=se,
                ci_low=diff - half,
                ci_high=diff + half,
                t=t_val,
                df=df,
                p_greater=float(stats.t.sf(t_val, df)) if se > 0 else float("nan"),
                p_two_sided=float(2 * stats.t.sf(abs(t_val), df)) if se > 0 else float("nan"),
                n_participants=int(fit.n_participants[j]),
                n_faces=int(fit.n_faces[j]),
            )
        )
    return out


@dataclass(frozen=True)
class CrossedOmnibus:
    """Wald test that every method has the same accuracy, as F(M − 1, G − 1)."""

    f: float
    df_num: int
    df_den: int
    p: float


def omnibus_crossed(fit: CrossedFit) -> CrossedOmnibus:
    """H0: equal pooled accuracies, two-way covariance, F reference distribution."""
    m = len(fit.methods)
    contrast = np.zeros((m - 1, 2 * m))
    contrast[:, 0] = 1.0
    contrast[np.arange(m - 1), np.arange(1, m)] = -1.0
    diff = contrast @ fit.params
    cov = contrast @ fit.cov @ contrast.T
    wald = float(diff @ np.linalg.pinv(cov) @ diff)
    df_den = fit.df(*range(m))
    f_val = wald / (m - 1)
    return CrossedOmnibus(
        f=f_val, df_num=m - 1, df_den=df_den, p=float(stats.f.sf(f_val, m - 1, df_den))
    )


def pairwise_crossed(fit: CrossedFit, level: float = 0.95) -> pd.DataFrame:
    """Every method pair: difference in pp with a t(G − 1) interval and Holm-adjusted p.

    The odds ratio (from the same pooled proportions, delta method on the log scale) is
    given alongside for readers who think in odds; the test is the one on the difference.
    """
    m = len(fit.methods)
    p = fit.accuracy
    rows = []
    for a, b in combinations(range(m), 2):
        df = fit.df(a, b)
        crit = _t_crit(level, df)
        grad = np.zeros(2 * m)
        grad[a], grad[b] = 1.0, -1.0
        se = float(np.sqrt(fit.variance(grad)))
        diff = float(p[a] - p[b])
        log_or = float(special.logit(p[a]) - special.logit(p[b]))
        grad_or = np.zeros(2 * m)
        grad_or[a] = 1.0 / (p[a] * (1 - p[a]))
        grad_or[b] = -1.0 / (p[b] * (1 - p[b]))
        se_or = float(np.sqrt(fit.variance(grad_or)))
        t_val = diff / se if se > 0 else float("nan")
        rows.append(
            {
                "method_a": fit.methods[a],
                "method_b": fit.methods[b],
                "diff_pp": 100 * diff,
                "diff_low_pp": 100 * (diff - crit * se),
                "diff_high_pp": 100 * (diff + crit * se),
                "odds_ratio": float(np.exp(log_or)),
                "or_low": float(np.exp(log_or - crit * se_or)),
                "or_high": float(np.exp(log_or + crit * se_or)),
                "t": t_val,
                "df": df,
                "p": float(2 * stats.t.sf(abs(t_val), df)) if se > 0 else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = multipletests(table["p"].fillna(1.0), method="holm")[1]
    return table
