"""Per-method accuracy: the default crossed interval and the participant-only ones.

The estimand is the population-averaged probability that a response to a target-present
question of a method contains a true candidate. The default interval (``ci_low``/``ci_high``)
treats participants and faces as samples (``analysis.crossed``: two-way participant × face
cluster-robust, t(G − 1)). The participant-only intervals below treat the faces shown as
fixed, so they are conditional on these faces (too narrow for faces in general):

* a participant-cluster bootstrap (``scipy.stats.bootstrap``, BCa, resampling
  participants; the statistic is the pooled proportion = Σ correct / Σ answered);
* GEE (Binomial, logit link, exchangeable working correlation, groups = participant,
  robust sandwich covariance), one logit coefficient per method; the Wald interval is
  computed on the logit scale and transformed back (it stays inside [0, 1]);
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
from analysis.crossed import CrossedFit, accuracy_intervals, fit_crossed


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


def method_accuracy(
    df: pd.DataFrame,
    level: float = 0.95,
    n_resamples: int = 1999,
    seed: int = 0,
    gee: GeeFit | None = None,
    crossed: CrossedFit | None = None,
) -> pd.DataFrame:
    """Per method: pooled accuracy, the crossed interval, and the participant-only ones."""
    present = present_responses(df)
    gee = gee or fit_gee(present)
    crossed = crossed or fit_crossed(present, gee.methods)
    default = accuracy_intervals(crossed, level).set_index("method")
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
        crossed_row = default.loc[method]
        rows.append(
            {
                "method": method,
                "n_responses": n,
                "n_participants": len(totals),
                "n_faces": int(crossed_row["n_faces"]),
                "correct": k,
                "accuracy": k / n if n else float("nan"),
                "ci_low": float(crossed_row["ci_low"]),  # default: participants × faces
                "ci_high": float(crossed_row["ci_high"]),
                "df": int(crossed_row["df"]),
                "matched_chance": float(sub[c.MATCHED_CHANCE].mean()),
                "flat_chance": float(sub[c.FLAT_CHANCE].mean()),
                # Conditional on these faces (participants resampled only):
                "participant_mean": float((totals["correct"] / totals["n"]).mean()),
                "gee_estimate": float(gee_p[j]),
                "gee_low": float(gee_low[j]),
                "gee_high": float(gee_high[j]),
                "bootstrap_low": b_low,
                "bootstrap_high": b_high,
                "wilson_low": float(w_low),
                "wilson_high": float(w_high),
            }
        )
    return pd.DataFrame(rows)
