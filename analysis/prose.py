"""APA-style result sentences built from the analysis numbers."""

from __future__ import annotations

import math

from analysis.chance import ChanceTest
from analysis.comparisons import OmnibusTest


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


def accuracy_sentence(row: dict[str, object], test: ChanceTest, d_z: float) -> str:
    """One method: accuracy with CI, and the test against matched chance."""
    return (
        f"For {row['method']}, {pct(float(row['accuracy']))} of {row['n_responses']} "
        f"target-present responses contained a true match "
        f"(95% CI [{pct(float(row['gee_low']))}, {pct(float(row['gee_high']))}], GEE; "
        f"bootstrap [{pct(float(row['bootstrap_low']))}, {pct(float(row['bootstrap_high']))}]), "
        f"{100 * test.difference:.1f} pp above matched chance ({pct(test.matched_chance)}), "
        f"t({test.df}) = {test.t:.2f}, {p_apa(test.p_greater)} (one-sided), d_z = {d_z:.2f}."
    )


def omnibus_sentence(test: OmnibusTest, n_clusters: int) -> str:
    """The GEE omnibus test of equal accuracy across methods."""
    return (
        f"Accuracy differed between methods, Wald χ²({test.df}) = {test.chi2:.2f}, "
        f"{p_apa(test.p)} (GEE, {n_clusters} participant clusters)."
        if test.p < 0.05
        else f"Accuracy did not differ detectably between methods, Wald χ²({test.df}) = "
        f"{test.chi2:.2f}, {p_apa(test.p)} (GEE, {n_clusters} participant clusters)."
    )


def contrast_sentence(row: dict[str, object]) -> str:
    """One pairwise contrast as OR and pp difference with Holm-adjusted p."""
    return (
        f"{row['method_a']} vs {row['method_b']}: OR = {float(row['odds_ratio']):.2f} "
        f"[{float(row['or_low']):.2f}, {float(row['or_high']):.2f}], "
        f"Δ = {float(row['diff_pp']):.1f} pp [{float(row['diff_low_pp']):.1f}, "
        f"{float(row['diff_high_pp']):.1f}], {p_apa(float(row['p_holm']))} (Holm)."
    )
