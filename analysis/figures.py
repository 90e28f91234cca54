"""Report figures (matplotlib ``Figure`` objects rendered by Agg; PNG + SVG).

No pyplot: figures are built as ``matplotlib.figure.Figure`` and saved directly, which uses
the Agg canvas and keeps no global state (safe inside a Django process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import columns as c
from analysis.confidence import CONFIDENCE_LEVELS

FIG7_CAPTION = (
    "Share of target-present responses with at least one true candidate selected, per "
    "method: point = pooled accuracy with 95% CI crossed over participants and faces; "
    "dots = participants' own accuracy (jittered); dashed line = 1/K; dotted segments = "
    "matched chance for the selections actually made. With 5 questions per method a "
    "participant's score takes only 6 values (0, 20, …, 100%), hence the bands of dots."
)


def _error_bars(centre: object, low: object, high: object) -> np.ndarray:
    """Asymmetric error-bar lengths; rounding can leave a bound a hair past the estimate."""
    centre, low, high = (np.asarray(v, dtype=float) for v in (centre, low, high))
    return np.clip(np.vstack([centre - low, high - centre]), 0.0, None)


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write PNG and SVG; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def plot_accuracy(
    participant_means: pd.DataFrame,
    accuracy: pd.DataFrame,
    k: int,
    out_dir: Path,
    seed: int = 0,
) -> list[Path]:
    """The paper's Fig. 7, with clustered CIs over participant dots and both chance lines."""
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.subplots()
    methods = list(accuracy["method"])
    for x, method in enumerate(methods):
        dots = participant_means.loc[participant_means[c.METHOD] == method, "accuracy"]
        ax.boxplot(
            [dots.to_numpy()], positions=[x], widths=0.5, showfliers=False, manage_ticks=False,
            boxprops={"color": "0.7"}, whiskerprops={"color": "0.7"}, capprops={"color": "0.7"},
            medianprops={"color": "0.5"},
        )  # fmt: skip
        jitter = rng.uniform(-0.18, 0.18, len(dots))
        ax.scatter(x + jitter, dots, s=8, alpha=0.35, color="tab:blue", linewidths=0)
        row = accuracy[accuracy["method"] == method].iloc[0]
        ax.errorbar(
            x, row["accuracy"],
            yerr=_error_bars([row["accuracy"]], [row["ci_low"]], [row["ci_high"]]),
            fmt="o", color="black", capsize=5, markersize=6, zorder=5,
        )  # fmt: skip
        ax.hlines(row["matched_chance"], x - 0.3, x + 0.3, colors="tab:red", linestyles=":")
    ax.axhline(1 / k, color="black", linestyle="--", linewidth=1, label=f"1/K = {1 / k:.0%}")
    ax.plot([], [], color="tab:red", linestyle=":", label="matched chance")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("share of responses with ≥ 1 true match")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, out_dir, "fig_accuracy")


def plot_confidence_bars(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Stacked shares of each confidence rating, per method, split by correct/incorrect."""
    present = df[df[c.TARGET_PRESENT]]
    fig = Figure(figsize=(7.0, 3.8))
    ax = fig.subplots()
    colors = ["#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641"]
    labels, x = [], 0.0
    ticks = []
    for method, sub in present.groupby(c.METHOD, sort=True):
        for correct, label in ((True, "correct"), (False, "wrong")):
            cell = sub[sub[c.ANY_CORRECT] == correct][c.CONFIDENCE].astype(int)
            shares = cell.value_counts(normalize=True).reindex(CONFIDENCE_LEVELS, fill_value=0)
            bottom = 0.0
            for level, color in zip(CONFIDENCE_LEVELS, colors, strict=True):
                ax.bar(x, shares[level], bottom=bottom, color=color, edgecolor="0.3", width=0.8,
                       label=str(level) if x == 0 else None)  # fmt: skip
                bottom += shares[level]
            ticks.append(x)
            labels.append(f"{method}\n{label}")
            x += 1
        x += 0.5
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("share of responses")
    ax.legend(title="confidence", fontsize=7, title_fontsize=8, bbox_to_anchor=(1.0, 1.0))
    return _save(fig, out_dir, "fig_confidence")


def plot_calibration(calibration: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy at each confidence rating, per method (Wilson intervals)."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for i, (method, sub) in enumerate(calibration.groupby("method", sort=True)):
        sub = sub[sub["n"] > 0]
        offset = (i - 2) * 0.06
        ax.errorbar(
            sub["confidence"] + offset, sub["accuracy"],
            yerr=_error_bars(sub["accuracy"], sub["wilson_low"], sub["wilson_high"]),
            marker="o", capsize=3, label=method,
            color="black" if method == "all" else None,
        )  # fmt: skip
    ax.set_xticks(list(CONFIDENCE_LEVELS))
    ax.set_xlabel("confidence (1 = not at all, 5 = very)")
    ax.set_ylabel("accuracy (target present)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig_calibration")


def plot_forest(contrasts: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Forest plot of pairwise odds ratios (log axis) with Holm-adjusted p in the labels."""
    fig = Figure(figsize=(6.0, 3.2))
    ax = fig.subplots()
    y = np.arange(len(contrasts))[::-1]
    ax.errorbar(
        contrasts["odds_ratio"], y,
        xerr=_error_bars(contrasts["odds_ratio"], contrasts["or_low"], contrasts["or_high"]),
        fmt="s", color="black", capsize=3,
    )  # fmt: skip
    ax.axvline(1.0, color="0.5", linestyle="--")
    ax.set_xscale("log")
    labels = [
        f"{r.method_a} vs {r.method_b} (p_Holm {_p_text(r.p_holm)})" for r in contrasts.itertuples()
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("odds ratio of ≥ 1 true match (95% CI, participants × faces)")
    return _save(fig, out_dir, "fig_contrasts")


def _p_text(p: float) -> str:
    """p in APA style for labels."""
    return "< .001" if p < 0.001 else f"= {p:.3f}".replace("0.", ".")
