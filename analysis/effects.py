"""Effect sizes of accuracy over chance, per method, each centred on its own estimate.

* percentage points over matched chance: the crossed estimate and its t(G − 1) interval
  (``analysis.crossed``: the same numbers as the report's sentence and test);
* percentage points over the flat 1/K baseline: pooled accuracy − 1/K, with the crossed
  accuracy interval shifted by 1/K (same estimator, so the interval brackets the estimate);
* Cohen's h between pooled accuracy and pooled matched chance (2·asin√p − 2·asin√p0);
* d_z: mean of participant (accuracy − matched chance) differences over their SD — a
  participant-level standardised effect (conditional on these faces), with its own mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.chance import ChanceTest
from analysis.crossed import CrossedChanceTest


def cohens_h(p: float | np.ndarray, p0: float | np.ndarray) -> np.ndarray:
    """Cohen's h for two proportions (arcsine-transformed difference)."""
    return 2 * np.arcsin(np.sqrt(p)) - 2 * np.arcsin(np.sqrt(p0))


def effect_sizes(
    accuracy: pd.DataFrame,
    crossed: list[CrossedChanceTest],
    participant_tests: list[ChanceTest],
) -> pd.DataFrame:
    """Per method: pp over matched and flat chance (crossed), Cohen's h and d_z."""
    default = {t.method: t for t in crossed}
    by_participant = {t.method: t for t in participant_tests}
    rows = []
    for rec in accuracy.to_dict("records"):
        test = default[rec["method"]]
        people = by_participant[rec["method"]]
        flat = rec["flat_chance"]
        rows.append(
            {
                "method": rec["method"],
                "accuracy_pp": 100 * rec["accuracy"],
                "over_matched_pp": 100 * test.difference,
                "over_matched_low_pp": 100 * test.ci_low,
                "over_matched_high_pp": 100 * test.ci_high,
                "over_flat_pp": 100 * (rec["accuracy"] - flat),
                "over_flat_low_pp": 100 * (rec["ci_low"] - flat),
                "over_flat_high_pp": 100 * (rec["ci_high"] - flat),
                "cohens_h": float(cohens_h(rec["accuracy"], rec["matched_chance"])),
                "participant_d_z": people.difference / people.sd_difference
                if people.sd_difference > 0
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)
