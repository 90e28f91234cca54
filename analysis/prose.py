"""APA-style result sentences built from the analysis numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from analysis.comparisons import OmnibusTest
from analysis.crossed import CrossedChanceTest, CrossedOmnibus


def p_apa(p: float) -> str:
    """p value in APA style: "p < .001" or "p = .034" (no leading zero)."""
    if math.isnan(p):
        return "p = n/a"
    if p < 0.001:
        return "p < .001"
    return f"p = {p:.3f}".replace("0.", ".", 1)


def pct(x: float, digits: int = 1) -> str:
    """Proportion as a percentage string."""
    return f"{100 * x:.{digits}f}%"


def accuracy_sentence(row: Mapping[str, Any], test: CrossedChanceTest, cohens_h: float) -> str:
    """One method: pooled accuracy, its crossed CI, and the crossed test against chance.

    Every number comes from one estimator (``analysis.crossed``): the pooled proportion, its
    two-way participant × face interval, and the gap to matched chance with its own interval.
    """
    return (
        f"For {row['method']}, {pct(float(row['accuracy']))} of {row['n_responses']} "
        f"target-present responses ({row['n_participants']} participants, {row['n_faces']} "
        f"faces) contained a true match (95% CI [{pct(float(row['ci_low']))}, "
        f"{pct(float(row['ci_high']))}]), {100 * test.difference:+.1f} pp "
        f"[{100 * test.ci_low:+.1f}, {100 * test.ci_high:+.1f}] relative to matched chance "
        f"({pct(test.matched_chance)}), t({test.df}) = {test.t:.2f}, "
        f"{p_apa(test.p_greater)} (one-sided), Cohen's h = {cohens_h:.2f}."
    )


def omnibus_sentence(test: CrossedOmnibus) -> str:
    """The crossed Wald test of equal accuracy across methods."""
    stat = f"F({test.df_num}, {test.df_den}) = {test.f:.2f}, {p_apa(test.p)}"
    if test.p < 0.05:
        return f"Accuracy differed between methods, {stat} (participants and faces crossed)."
    return (
        f"Accuracy did not differ detectably between methods, {stat} (participants and faces "
        "crossed)."
    )


def omnibus_sentence_conditional(test: OmnibusTest, n_clusters: int) -> str:
    """The participant-only GEE omnibus test (conditional on these faces)."""
    return (
        f"GEE Wald χ²({test.df}) = {test.chi2:.2f}, {p_apa(test.p)} ({n_clusters} participant "
        "clusters; conditional on these faces)."
    )


def contrast_sentence(row: Mapping[str, Any]) -> str:
    """One pairwise contrast: pp difference with CI and Holm-adjusted p; OR alongside."""
    return (
        f"{row['method_a']} vs {row['method_b']}: Δ = {float(row['diff_pp']):.1f} pp "
        f"[{float(row['diff_low_pp']):.1f}, {float(row['diff_high_pp']):.1f}], "
        f"t({int(row['df'])}) = {float(row['t']):.2f}, {p_apa(float(row['p_holm']))} (Holm); "
        f"OR = {float(row['odds_ratio']):.2f} [{float(row['or_low']):.2f}, "
        f"{float(row['or_high']):.2f}]."
    )
