"""Per-method accuracy with intervals that respect participant clustering.

The estimand is the population-averaged probability that a response to a target-present
question of a method contains a true candidate. Each participant answers several questions
per method, so responses are not independent; intervals come from

* a participant-cluster bootstrap (``scipy.stats.bootstrap``, BCa, resampling
  participants; the statistic is the pooled proportion = Σ correct / Σ answered);
* GEE (Binomial, logit link, exchangeable working correlation, groups = participant,
  robust sandwich covariance), one logit coefficient per method; the Wald interval is
  computed on the logit scale and transformed back (it stays inside [0, 1]);
* a two-way (participant × identity) cluster-robust interval for the pooled proportion
  (Cameron–Gelbach–Miller: V_p + V_i − V_{p∩i}), which also allows for items being a
  sample of identities;
* Wilson intervals treating responses as independent — descriptive only, too narrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats
from statsmodels.stats.proportion import proportion_confint

from analysis import columns as c


@dataclass(frozen=True)
class GeeFit:
    """A cell-means GEE fit: one logit coefficient per method with robust covariance."""

    methods: tuple[str, ...]
    params: np.ndarray  # logit of the population-averaged accuracy, per method
    cov: np.ndarray  # robust (sandwich) covariance of params
    n_clusters: int
    n_obs: int
    working_correlation: float

    def probability(self) -> np.ndarray:
        """Population-averaged accuracy per method."""
        return special.expit(self.params)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Logit-scale Wald interval transformed to the probability scale."""
        z = stats.norm.ppf(0.5 + level / 2)
        se = np.sqrt(np.diag(self.cov))
        return special.expit(self.params - z * se), special.expit(self.params + z * se)


def present_responses(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that enter the primary outcome: target-present, non-attention responses."""
    return df[df[c.TARGET_PRESENT] & ~df[c.IS_ATTENTION_CHECK]]


def fit_gee(
    df: pd.DataFrame, outcome: str = c.ANY_CORRECT, methods: tuple[str, ...] | None = None
) -> GeeFit:
    """Fit GEE(outcome ~ 0 + method), Binomial/logit, exchangeable, clustered by participant."""
    data = df.sort_values(c.PARTICIPANT, kind="stable")
    methods = methods or tuple(sorted(data[c.METHOD].unique()))
    exog = np.column_stack([(data[c.METHOD] == m).to_numpy(dtype=float) for m in methods])
    endog = data[outcome].to_numpy(dtype=float)
    groups = pd.factorize(data[c.PARTICIPANT])[0]
    model = sm.GEE(
        endog,
        exog,
        groups=groups,
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    result = model.fit(maxiter=100)
    dep = model.cov_struct.dep_params
    return GeeFit(
        methods=methods,
        params=np.asarray(result.params, dtype=float),
        cov=np.asarray(result.cov_robust, dtype=float),
        n_clusters=int(groups.max() + 1),
        n_obs=len(endog),
        working_correlation=float(dep) if np.isscalar(dep) else float("nan"),
    )


def participant_totals(df: pd.DataFrame, method: str, outcome: str = c.ANY_CORRECT) -> pd.DataFrame:
    """Per participant, for one method: number correct and number answered."""
    sub = df[df[c.METHOD] == method]
    grouped = sub.groupby(c.PARTICIPANT)[outcome]
    return pd.DataFrame({"correct": grouped.sum().astype(float), "n": grouped.size()})


def _pooled(correct: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pooled proportion Σ correct / Σ n (vectorised over bootstrap resamples)."""
    return np.sum(correct, axis=axis) / np.sum(n, axis=axis)


def cluster_bootstrap_interval(
    correct: np.ndarray,
    n: np.ndarray,
    level: float = 0.95,
    n_resamples: int = 1999,
    seed: int = 0,
    method: str = "BCa",
) -> tuple[float, float]:
    """Participant-cluster bootstrap interval of the pooled proportion (participants resampled)."""
    correct = np.asarray(correct, dtype=float)
    n = np.asarray(n, dtype=float)
    if correct.sum() in (0.0, n.sum()):  # degenerate: every resample gives the same value
        value = float(correct.sum() / n.sum())
        return value, value
    res = stats.bootstrap(
        (correct, n),
        _pooled,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def two_way_cluster_interval(
    df: pd.DataFrame, outcome: str = c.ANY_CORRECT, level: float = 0.95
) -> tuple[float, float, float]:
    """Pooled proportion with a participant × identity cluster-robust, logit-transformed CI."""
    y = df[outcome].to_numpy(dtype=float)
    n = y.size
    p = float(y.mean())
    if p in (0.0, 1.0):
        return p, p, p
    infl = (y - p) / n

    def clustered(keys: pd.Series | pd.MultiIndex) -> float:
        return float((pd.Series(infl).groupby(np.asarray(keys)).sum() ** 2).sum())

    keys_both = (
        df[c.PARTICIPANT].astype(str).to_numpy()
        + "|"
        + df[c.TARGET_IDENTITY].astype(str).to_numpy()
    )
    v_p = clustered(df[c.PARTICIPANT])
    v_i = clustered(df[c.TARGET_IDENTITY])
    v_pi = clustered(pd.Series(keys_both))
    var = v_p + v_i - v_pi
    if var <= 0:  # CGM can go negative in small samples; fall back to the larger one-way
        var = max(v_p, v_i)
    se_logit = np.sqrt(var) / (p * (1 - p))
    z = stats.norm.ppf(0.5 + level / 2)
    centre = special.logit(p)
    return (
        p,
        float(special.expit(centre - z * se_logit)),
        float(special.expit(centre + z * se_logit)),
    )


def method_accuracy(
    df: pd.DataFrame,
    level: float = 0.95,
    n_resamples: int = 1999,
    seed: int = 0,
    gee: GeeFit | None = None,
) -> pd.DataFrame:
    """Per method: pooled accuracy on target-present questions with all four intervals."""
    present = present_responses(df)
    gee = gee or fit_gee(present)
    gee_low, gee_high = gee.interval(level)
    gee_p = gee.probability()
    rows = []
    for j, method in enumerate(gee.methods):
        sub = present[present[c.METHOD] == method]
        totals = participant_totals(present, method)
        k = int(sub[c.ANY_CORRECT].sum())
        n = len(sub)
        w_low, w_high = proportion_confint(k, n, alpha=1 - level, method="wilson")
        b_low, b_high = cluster_bootstrap_interval(
            totals["correct"].to_numpy(),
            totals["n"].to_numpy(),
            level=level,
            n_resamples=n_resamples,
            seed=seed + j,
        )
        _, t_low, t_high = two_way_cluster_interval(sub, level=level)
        rows.append(
            {
                "method": method,
                "n_responses": n,
                "n_participants": len(totals),
                "n_identities": sub[c.TARGET_IDENTITY].nunique(),
                "correct": k,
                "accuracy": k / n if n else float("nan"),
                "participant_mean": float((totals["correct"] / totals["n"]).mean()),
                "matched_chance": float(sub[c.MATCHED_CHANCE].mean()),
                "flat_chance": float(sub[c.FLAT_CHANCE].mean()),
                "wilson_low": float(w_low),
                "wilson_high": float(w_high),
                "bootstrap_low": b_low,
                "bootstrap_high": b_high,
                "gee_estimate": float(gee_p[j]),
                "gee_low": float(gee_low[j]),
                "gee_high": float(gee_high[j]),
                "twoway_low": t_low,
                "twoway_high": t_high,
            }
        )
    return pd.DataFrame(rows)
