"""Effect sizes of accuracy over chance, per method.

* percentage points over matched chance, with the participant-level t interval (the
  same unit that the chance test uses), and over the flat 1/K baseline;
* Cohen's h between pooled accuracy and pooled matched chance (2·asin√p − 2·asin√p0);
* d_z: mean of participant (accuracy − matched chance) differences over their SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.chance import ChanceTest


def cohens_h(p: float | np.ndarray, p0: float | np.ndarray) -> np.ndarray:
    """Cohen's h for two proportions (arcsine-transformed difference)."""
    return 2 * np.arcsin(np.sqrt(p)) - 2 * np.arcsin(np.sqrt(p0))


def effect_sizes(accuracy: pd.DataFrame, tests: list[ChanceTest]) -> pd.DataFrame:
    """Per method: pp over matched and flat chance, Cohen's h and d_z."""
    by_method = {t.method: t for t in tests}
    rows = []
    for rec in accuracy.to_dict("records"):
        test = by_method[rec["method"]]
        rows.append(
            {
                "method": rec["method"],
                "accuracy_pp": 100 * rec["accuracy"],
                "over_matched_pp": 100 * test.difference,
                "over_matched_low_pp": 100 * test.ci_low,
                "over_matched_high_pp": 100 * test.ci_high,
                "over_flat_pp": 100 * (rec["accuracy"] - rec["flat_chance"]),
                "over_flat_low_pp": 100 * (rec["gee_low"] - rec["flat_chance"]),
                "over_flat_high_pp": 100 * (rec["gee_high"] - rec["flat_chance"]),
                "cohens_h": float(cohens_h(rec["accuracy"], rec["matched_chance"])),
                "d_z": test.difference / test.sd_difference
                if test.sd_difference > 0
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)
