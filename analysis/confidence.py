"""Confidence ratings: the paper's Table III, an ordinal model, calibration and type-2 AUROC.

* Table III: share of responses rated "confident" (rating > 1, i.e. any confidence) per
  method, over all analysed responses (target present or absent, as in the paper), with a
  participant-cluster bootstrap (BCa) interval and a Wilson interval (descriptive).
* Ordinal model: proportional-odds logit (``OrderedModel``) of the 1–5 rating on method
  and correctness, on target-present responses; standard errors are participant-clustered
  sandwich estimates (``cov_type="cluster"``). It is a population-averaged reading: it has
  no random effects, so coefficients are attenuated relative to a mixed model.
* Calibration: accuracy at each confidence level, per method (Wilson intervals; counts).
* Type-2 AUROC per participant: how well their confidence separates their correct from
  their incorrect target-present answers (0.5 = no insight); undefined for participants
  with only correct or only incorrect answers; mean tested against 0.5 by a t test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.stats.proportion import proportion_confint

from analysis import columns as c
from analysis.estimates import cluster_bootstrap_interval, participant_totals

CONFIDENCE_LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


def confident_shares(
    df: pd.DataFrame, level: float = 0.95, n_resamples: int = 1999, seed: int = 0
) -> pd.DataFrame:
    """Table III: per method, share of responses with confidence > 1, with intervals."""
    rows = []
    for j, (method, sub) in enumerate(df.groupby(c.METHOD, observed=True, sort=True)):
        totals = participant_totals(df, str(method), outcome=c.CONFIDENT)
        k, n = int(sub[c.CONFIDENT].sum()), len(sub)
        w_low, w_high = proportion_confint(k, n, alpha=1 - level, method="wilson")
        b_low, b_high = cluster_bootstrap_interval(
            totals["correct"].to_numpy(),
            totals["n"].to_numpy(),
            level=level,
            n_resamples=n_resamples,
            seed=seed + 100 + j,
        )
        rows.append(
            {
                "method": method,
                "n_responses": n,
                "confident": k / n,
                "not_confident": 1 - k / n,
                "bootstrap_low": b_low,
                "bootstrap_high": b_high,
                "wilson_low": float(w_low),
                "wilson_high": float(w_high),
                "mean_rating": float(sub[c.CONFIDENCE].astype(float).mean()),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class OrdinalFit:
    """Proportional-odds model of confidence with participant-clustered SEs."""

    coefficients: pd.DataFrame  # term, coef, se, z, p, ci_low, ci_high, odds_ratio
    thresholds: tuple[float, ...]
    reference_method: str
    n_obs: int
    n_clusters: int


def ordinal_confidence(df: pd.DataFrame, level: float = 0.95) -> OrdinalFit:
    """OrderedModel(confidence ~ method + correct), logit link, clustered by participant."""
    present = df[df[c.TARGET_PRESENT]]
    methods = sorted(present[c.METHOD].unique())
    exog = pd.DataFrame(
        {f"method[{m}]": (present[c.METHOD] == m).to_numpy(dtype=float) for m in methods[1:]}
    )
    exog["correct"] = present[c.ANY_CORRECT].to_numpy(dtype=float)
    endog = pd.Categorical(
        present[c.CONFIDENCE].astype(int), categories=list(CONFIDENCE_LEVELS), ordered=True
    )
    groups = pd.factorize(present[c.PARTICIPANT])[0]
    model = OrderedModel(endog, exog, distr="logit")
    result = model.fit(
        method="bfgs", disp=0, maxiter=500, cov_type="cluster", cov_kwds={"groups": groups}
    )
    n_terms = exog.shape[1]
    params = np.asarray(result.params)[:n_terms]
    se = np.asarray(result.bse)[:n_terms]
    z_crit = stats.norm.ppf(0.5 + level / 2)
    coefficients = pd.DataFrame(
        {
            "term": list(exog.columns),
            "coef": params,
            "se": se,
            "z": params / se,
            "p": 2 * stats.norm.sf(np.abs(params / se)),
            "ci_low": params - z_crit * se,
            "ci_high": params + z_crit * se,
            "odds_ratio": np.exp(params),
        }
    )
    raw = np.asarray(result.params)[n_terms:]
    # statsmodels parametrises thresholds as the first cut and log increments.
    cuts = np.cumsum(np.concatenate([raw[:1], np.exp(raw[1:])]))
    return OrdinalFit(
        coefficients=coefficients,
        thresholds=tuple(float(x) for x in cuts),
        reference_method=methods[0],
        n_obs=len(present),
        n_clusters=int(groups.max() + 1),
    )


def calibration_table(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Accuracy at each confidence level, per method and for all methods together."""
    present = df[df[c.TARGET_PRESENT]]
    rows = []
    groups = [("all", present), *present.groupby(c.METHOD, observed=True, sort=True)]
    for method, sub in groups:
        for value in CONFIDENCE_LEVELS:
            cell = sub[sub[c.CONFIDENCE] == value]
            n, k = len(cell), int(cell[c.ANY_CORRECT].sum())
            low, high = (
                proportion_confint(k, n, alpha=1 - level, method="wilson") if n else (np.nan,) * 2
            )
            rows.append(
                {
                    "method": method,
                    "confidence": value,
                    "n": n,
                    "accuracy": k / n if n else float("nan"),
                    "wilson_low": float(low),
                    "wilson_high": float(high),
                }
            )
    return pd.DataFrame(rows)


def type2_auroc(df: pd.DataFrame) -> pd.DataFrame:
    """Per participant: AUROC of confidence for telling correct from incorrect answers."""
    present = df[df[c.TARGET_PRESENT]]
    rows = []
    for participant, sub in present.groupby(c.PARTICIPANT, sort=True):
        correct = sub[c.ANY_CORRECT].to_numpy(dtype=bool)
        conf = sub[c.CONFIDENCE].to_numpy(dtype=float)
        n_pos, n_neg = int(correct.sum()), int((~correct).sum())
        auc = float("nan")
        if n_pos and n_neg:
            u = stats.mannwhitneyu(conf[correct], conf[~correct]).statistic
            auc = float(u) / (n_pos * n_neg)
        rows.append(
            {"participant": participant, "n_correct": n_pos, "n_wrong": n_neg, "auroc": auc}
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class AurocSummary:
    """Mean per-participant type-2 AUROC with a t interval and a test against 0.5."""

    n_defined: int
    n_undefined: int
    mean: float
    ci_low: float
    ci_high: float
    t: float
    p: float


def summarise_auroc(table: pd.DataFrame, level: float = 0.95) -> AurocSummary:
    """Summarise ``type2_auroc`` output over participants with a defined AUROC."""
    values = table["auroc"].dropna().to_numpy(dtype=float)
    n = values.size
    if n < 2:
        nan = float("nan")
        return AurocSummary(n, len(table) - n, nan, nan, nan, nan, nan)
    mean, sem = float(values.mean()), float(stats.sem(values))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem
    test = stats.ttest_1samp(values, 0.5)
    return AurocSummary(
        n_defined=n,
        n_undefined=len(table) - n,
        mean=mean,
        ci_low=mean - half,
        ci_high=mean + half,
        t=float(test.statistic),
        p=float(test.pvalue),
    )
