"""Per-response outcomes derived from the long export, and their per-method summaries.

Primary outcome: on target-present questions (``n_true >= 1``), whether at least one
picked candidate is true (``any_correct``), as in the paper's Fig. 7. Secondary outcomes
expose selection strategies that inflate it: false alarms, precision, exact-set
correctness, and the correct "none" on target-absent questions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import columns as c
from analysis.chance import flat_chance, matched_chance

_BOOL_COLUMNS = (c.IS_ATTENTION_CHECK, c.NONE_SELECTED, c.ANY_CORRECT, c.IS_FAST)
_INT_COLUMNS = (c.POSITION, c.K, c.N_TRUE, c.N_SELECTED, c.N_CORRECT, c.CONFIDENCE)


def coerce_export(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the export's columns in analysis dtypes (CSV round trips lose them)."""
    out = df.copy()
    for col in _BOOL_COLUMNS:
        if col in out:
            out[col] = _to_bool(out[col]).fillna(False).astype(bool)
    for col in (c.ATTENTION_PASSED, c.PARTICIPANT_VERIFIED):
        if col in out:
            out[col] = _to_bool(out[col])
    if c.PARTICIPANT_FLAGS in out:
        out[c.PARTICIPANT_FLAGS] = out[c.PARTICIPANT_FLAGS].astype("string").fillna("").astype(str)
    for col in _INT_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col]).astype("Int64")
    for col in (c.DURATION_S, c.PARTICIPANT_TOTAL_S):
        if col in out:
            out[col] = pd.to_numeric(out[col]).astype(float)
    for col in (c.PARTICIPANT, c.STUDY, c.METHOD, c.MATCH_SET, c.TARGET_IDENTITY):
        if col in out:
            out[col] = out[col].astype(str)
    if c.SELECTED_RANKS in out:
        out[c.SELECTED_RANKS] = out[c.SELECTED_RANKS].map(_ranks_text).astype(str)
    return out


def _to_bool(series: pd.Series) -> pd.Series:
    """Map True/False/"true"/"1"/NA to a nullable boolean series."""
    if series.dtype == bool:
        return series.astype("boolean")
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    text = series.astype("string").str.strip().str.lower()
    return text.map(mapping).astype("boolean")


def _ranks_text(value: object) -> str:
    """Selected ranks as text; a CSV reader turns single ranks into floats and "" into NaN."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return str(int(value))
    return str(value)


def parse_ranks(value: str) -> tuple[int, ...]:
    """Ranks picked in one response, from the export's ";"-joined string."""
    return tuple(int(part) for part in str(value).split(";") if part.strip())


def add_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the derived outcome and chance columns of ``analysis.columns``."""
    out = coerce_export(df)
    k = out[c.K].to_numpy(dtype=float)
    n_true = out[c.N_TRUE].to_numpy(dtype=float)
    n_sel = out[c.N_SELECTED].to_numpy(dtype=float)
    n_cor = out[c.N_CORRECT].to_numpy(dtype=float)
    present = n_true >= 1
    out[c.TARGET_PRESENT] = present
    out[c.FALSE_ALARMS] = n_sel - n_cor
    with np.errstate(divide="ignore", invalid="ignore"):
        out[c.PRECISION] = np.where(n_sel > 0, n_cor / n_sel, np.nan)
        out[c.HIT_RATE] = np.where(present, n_cor / n_true, np.nan)
    out[c.EXACT_SET] = np.where(present, (n_cor == n_true) & (n_sel == n_true), n_sel == 0)
    out[c.CORRECT_NONE] = pd.array(np.where(present, pd.NA, n_sel == 0), dtype="boolean")
    out[c.MATCHED_CHANCE] = matched_chance(k, n_true, n_sel)
    out[c.FLAT_CHANCE] = flat_chance(k)
    out[c.CONFIDENT] = out[c.CONFIDENCE].to_numpy(dtype=float) > 1
    return out


def outcome_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: response-level means of every outcome (descriptive; no intervals)."""
    rows = []
    for method, group in df.groupby(c.METHOD, observed=True, sort=True):
        present = group[group[c.TARGET_PRESENT]]
        absent = group[~group[c.TARGET_PRESENT]]
        rows.append(
            {
                "method": method,
                "n_responses": len(group),
                "n_present": len(present),
                "n_absent": len(absent),
                "any_correct": _mean(present[c.ANY_CORRECT]),
                "matched_chance": _mean(present[c.MATCHED_CHANCE]),
                "flat_chance": _mean(present[c.FLAT_CHANCE]),
                "hit_rate": _mean(present[c.HIT_RATE]),
                "mean_selected": _mean(group[c.N_SELECTED]),
                "false_alarms_per_response": _mean(group[c.FALSE_ALARMS]),
                "any_false_alarm": _mean(group[c.FALSE_ALARMS] > 0),
                "precision": _mean(group[c.PRECISION]),
                "exact_set_present": _mean(present[c.EXACT_SET]),
                "correct_none_absent": _mean(absent[c.CORRECT_NONE]),
                "share_multi_pick": _mean(group[c.N_SELECTED] > 1),
            }
        )
    return pd.DataFrame(rows)


def _mean(series: pd.Series) -> float:
    """Mean ignoring NA; NaN for an empty series."""
    values = pd.to_numeric(series, errors="coerce").astype(float).dropna()
    return float(values.mean()) if len(values) else float("nan")
