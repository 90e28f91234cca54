"""Comparisons between methods from the participant-clustered GEE fit.

The omnibus test is a robust Wald χ² test that all method logits are equal. Each of the
pairwise contrasts is reported as an odds ratio (exp of the logit difference, Wald CI) and
as a difference in percentage points of the population-averaged accuracies (delta method),
with Holm-adjusted p-values (from the logit-scale Wald z) across all pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from analysis.estimates import GeeFit


@dataclass(frozen=True)
class OmnibusTest:
    """Robust Wald test that every method has the same accuracy."""

    chi2: float
    df: int
    p: float


def omnibus_wald(fit: GeeFit) -> OmnibusTest:
    """Wald χ² of H0: all method logits equal, using the robust covariance."""
    m = len(fit.methods)
    contrast = np.zeros((m - 1, m))
    contrast[:, 0] = 1.0
    contrast[np.arange(m - 1), np.arange(1, m)] = -1.0
    diff = contrast @ fit.params
    cov = contrast @ fit.cov @ contrast.T
    chi2 = float(diff @ np.linalg.solve(cov, diff))
    return OmnibusTest(chi2=chi2, df=m - 1, p=float(stats.chi2.sf(chi2, m - 1)))


def pairwise_contrasts(fit: GeeFit, level: float = 0.95) -> pd.DataFrame:
    """All method pairs: odds ratio and pp difference with CIs, raw and Holm-adjusted p."""
    z_crit = stats.norm.ppf(0.5 + level / 2)
    prob = special.expit(fit.params)
    rows = []
    for a, b in combinations(range(len(fit.methods)), 2):
        grad_logit = np.zeros(len(fit.methods))
        grad_logit[a], grad_logit[b] = 1.0, -1.0
        log_or = float(grad_logit @ fit.params)
        se_log_or = float(np.sqrt(grad_logit @ fit.cov @ grad_logit))
        grad_pp = np.zeros(len(fit.methods))
        grad_pp[a] = prob[a] * (1 - prob[a])
        grad_pp[b] = -prob[b] * (1 - prob[b])
        diff = float(prob[a] - prob[b])
        se_diff = float(np.sqrt(max(float(grad_pp @ fit.cov @ grad_pp), 0.0)))
        z = log_or / se_log_or
        rows.append(
            {
                "method_a": fit.methods[a],
                "method_b": fit.methods[b],
                "odds_ratio": float(np.exp(log_or)),
                "or_low": float(np.exp(log_or - z_crit * se_log_or)),
                "or_high": float(np.exp(log_or + z_crit * se_log_or)),
                "diff_pp": 100 * diff,
                "diff_low_pp": 100 * (diff - z_crit * se_diff),
                "diff_high_pp": 100 * (diff + z_crit * se_diff),
                "z": z,
                "p": float(2 * stats.norm.sf(abs(z))),
            }
        )
    table = pd.DataFrame(rows)
    table["p_holm"] = multipletests(table["p"], method="holm")[1]
    return table
