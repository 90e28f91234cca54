"""The study report: every analysis of the long export, written to one folder.

``build_report(df, config, out_dir)`` writes ``report.md``, ``report.html`` (figures
inline), the figures (PNG + SVG), ``responses_long.csv`` (every response with the derived
columns and whether it was analysed), ``summary.json`` (every number) and ``config.json``,
and returns the summary dict. Database-free; the ``analyze_study`` command calls it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import columns as c
from analysis import documents as doc
from analysis import figures, prose
from analysis.chance import chance_tests, participant_chance_differences
from analysis.comparisons import omnibus_wald, pairwise_contrasts
from analysis.confidence import (
    calibration_table,
    confident_shares,
    ordinal_confidence,
    summarise_auroc,
    type2_auroc,
)
from analysis.effects import effect_sizes
from analysis.estimates import fit_gee, method_accuracy, present_responses
from analysis.exclusions import ExclusionConfig, apply_exclusions
from analysis.outcomes import add_outcomes, outcome_summary
from analysis.power import power
from analysis.variability import random_effect_sds


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of one report; recorded in config.json."""

    exclusions: ExclusionConfig = field(default_factory=ExclusionConfig)
    confidence_level: float = 0.95
    n_resamples: int = 1999  # bootstrap resamples (BCa)
    seed: int = 0
    sensitivity: bool = True  # rerun the main estimates with everyone included
    variability: bool = True  # fit the crossed random-intercept model (variational Bayes)
    figures: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def analyse(df: pd.DataFrame, config: AnalysisConfig) -> dict[str, Any]:
    """All estimates on already-excluded, outcome-annotated responses (no files)."""
    level = config.confidence_level
    present = present_responses(df)
    gee = fit_gee(present)
    accuracy = method_accuracy(
        df, level=level, n_resamples=config.n_resamples, seed=config.seed, gee=gee
    )
    tests = chance_tests(df, confidence_level=level)
    result: dict[str, Any] = {
        "outcomes": outcome_summary(df),
        "accuracy": accuracy,
        "gee": {
            "n_clusters": gee.n_clusters,
            "n_obs": gee.n_obs,
            "working_correlation": gee.working_correlation,
        },
        "chance_tests": tests,
        "effects": effect_sizes(accuracy, tests),
        "omnibus": omnibus_wald(gee),
        "contrasts": pairwise_contrasts(gee, level=level),
        "participant_means": participant_chance_differences(df),
    }
    result["confident"] = confident_shares(
        df, level=level, n_resamples=config.n_resamples, seed=config.seed
    )
    result["ordinal"] = ordinal_confidence(df, level=level)
    result["calibration"] = calibration_table(df, level=level)
    auroc = type2_auroc(df)
    result["auroc"] = summarise_auroc(auroc, level=level)
    if config.variability:
        result["variability"] = random_effect_sds(present)
    return result


def build_report(
    df: pd.DataFrame,
    config: AnalysisConfig,
    out_dir: Path,
    *,
    preface: Sequence[doc.Block] = (),
    appendix: Sequence[doc.Block] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every analysis on the long export and write the report folder; return the summary.

    ``preface`` blocks open the report (e.g. the pre-registration status), ``appendix``
    blocks close it, and ``extra`` entries join the summary; they come from callers that
    know the study (``analysis.services``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = add_outcomes(df)
    excluded = apply_exclusions(data, config.exclusions)
    main = analyse(excluded.data, config)
    k = int(data[c.K].mode().iloc[0])
    n_per_method = int(
        excluded.data.groupby([c.PARTICIPANT, c.METHOD]).size().median()
        if len(excluded.data)
        else 5
    )
    planned = power(
        max(excluded.data[c.PARTICIPANT].nunique(), 3),
        questions_per_method=max(n_per_method, 1),
        chance=1 / k,
    )
    summary: dict[str, Any] = {
        "study": sorted(data[c.STUDY].astype(str).unique().tolist()),
        "k": k,
        "exclusions": excluded.steps_table(),
        "excluded_participants": {rule: list(who) for rule, who in excluded.removed.items()},
        **{name: value for name, value in main.items() if name != "participant_means"},
        "power_at_this_n": planned.as_dict(),
    }
    if config.sensitivity:
        everyone = apply_exclusions(data, config.exclusions.sensitivity_variant())
        sens = method_accuracy(
            everyone.data,
            level=config.confidence_level,
            n_resamples=config.n_resamples,
            seed=config.seed,
        )
        summary["sensitivity"] = {
            "exclusions": everyone.steps_table(),
            "accuracy": sens,
            "chance_tests": chance_tests(everyone.data, config.confidence_level),
        }

    figure_blocks: dict[str, doc.Figure] = {}
    if config.figures and len(excluded.data):
        fig_dir = out_dir / "figures"
        made = {
            "accuracy": (
                figures.plot_accuracy(main["participant_means"], main["accuracy"], k, fig_dir),
                figures.FIG7_CAPTION,
            ),
            "confidence": (
                figures.plot_confidence_bars(excluded.data, fig_dir),
                "Confidence ratings (1 red … 5 green) by method, correct vs wrong answers "
                "(target-present questions).",
            ),
            "calibration": (
                figures.plot_calibration(main["calibration"], fig_dir),
                "Accuracy at each confidence rating (Wilson 95% intervals; responses treated "
                "as independent, so descriptive).",
            ),
            "contrasts": (
                figures.plot_forest(main["contrasts"], fig_dir),
                "Pairwise method contrasts: odds ratios with participant-clustered 95% CIs "
                "(GEE) and Holm-adjusted p-values.",
            ),
        }
        for name, (paths, caption) in made.items():
            figure_blocks[name] = doc.Figure(png=paths[0], svg=paths[1], caption=caption)
        summary["figures"] = {
            name: [str(b.png.relative_to(out_dir)), str(b.svg.relative_to(out_dir))]
            for name, b in figure_blocks.items()
        }

    long = data.copy()
    analysed_keys = set(zip(excluded.data[c.PARTICIPANT], excluded.data[c.POSITION], strict=True))
    long["analysed"] = [
        (p, pos) in analysed_keys
        for p, pos in zip(long[c.PARTICIPANT], long[c.POSITION], strict=True)
    ]
    long.to_csv(out_dir / "responses_long.csv", index=False)

    summary.update(extra or {})
    plain = _jsonable(summary)
    (out_dir / "summary.json").write_text(
        json.dumps(plain, indent=2, allow_nan=False), encoding="utf-8"
    )
    (out_dir / "config.json").write_text(
        json.dumps(_jsonable(config.as_dict()), indent=2), encoding="utf-8"
    )
    document = _document(summary, main, figure_blocks, config, preface)
    for block in appendix:
        document.add(block)
    (out_dir / "report.md").write_text(doc.to_markdown(document, out_dir), encoding="utf-8")
    (out_dir / "report.html").write_text(doc.to_html(document), encoding="utf-8")
    return plain


def _jsonable(value: Any) -> Any:
    """Turn tables, dataclasses and numpy scalars into JSON types (NaN → None)."""
    if isinstance(value, pd.DataFrame):
        return [_jsonable(rec) for rec in value.to_dict("records")]
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(key): _jsonable(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA:
        return None
    return value


def _document(
    summary: dict[str, Any],
    main: dict[str, Any],
    figs: dict[str, doc.Figure],
    config: AnalysisConfig,
    preface: Sequence[doc.Block] = (),
) -> doc.Document:
    """Assemble the report's blocks."""
    d = doc.Document(title=f"Visual matching study report: {', '.join(summary['study'])}")
    for block in preface:
        d.add(block)
    d.add(doc.Heading("Exclusions"))
    d.add(
        doc.Paragraph(
            "Rules were fixed before analysis and never use accuracy. Attention items are "
            "removed from all analyses. Where the study ran on Prolific, participants whose "
            "SESSION_ID Prolific did not confirm (unverified) are left out, as are "
            "participations with integrity flags (flagged). Counts after each step:"
        )
    )
    d.add(doc.Table(summary["exclusions"]))

    d.add(doc.Heading("Accuracy per method (primary outcome)"))
    d.add(
        doc.Paragraph(
            "Primary outcome: on target-present questions, at least one selected candidate is "
            "the target. Matched chance is the probability that the same number of random picks "
            "would hit a true candidate, 1 − C(K−m, s)/C(K, s); 1/K is the paper's baseline. "
            "Intervals: GEE (Binomial, exchangeable, participant clusters, robust SE, logit "
            "scale), participant-cluster bootstrap (BCa, "
            f"{config.n_resamples} resamples), two-way participant × identity clustering, and "
            "Wilson (independent responses; descriptive only)."
        )
    )
    if "accuracy" in figs:
        d.add(figs["accuracy"])
    d.add(doc.Table(main["accuracy"], "Per-method accuracy (proportions)."))
    effects = main["effects"].set_index("method")
    for row, test in zip(main["accuracy"].to_dict("records"), main["chance_tests"], strict=True):
        d.add(doc.Paragraph(prose.accuracy_sentence(row, test, effects.loc[row["method"], "d_z"])))
    tests = pd.DataFrame([asdict(t) for t in main["chance_tests"]])
    d.add(
        doc.Table(
            tests,
            "Accuracy − matched chance on participant means. The t test is primary; the "
            "Wilcoxon test assumes symmetric differences and over-rejects at chance level.",
        )
    )
    d.add(doc.Table(main["effects"], "Effect sizes (pp, Cohen's h, d_z).", digits=2))

    d.add(doc.Heading("Comparisons between methods"))
    d.add(doc.Paragraph(prose.omnibus_sentence(main["omnibus"], main["gee"]["n_clusters"])))
    for row in main["contrasts"].to_dict("records"):
        d.add(doc.Paragraph(prose.contrast_sentence(row)))
    if "contrasts" in figs:
        d.add(figs["contrasts"])
    d.add(doc.Table(main["contrasts"], "Pairwise contrasts (GEE, Holm-adjusted)."))

    d.add(doc.Heading("Secondary outcomes"))
    d.add(
        doc.Paragraph(
            "False alarms, precision, exact-set correctness and correct 'none' answers reveal "
            "selection strategies (e.g. ticking every candidate) that inflate the primary "
            "outcome."
        )
    )
    d.add(doc.Table(main["outcomes"], "Per-method response-level means."))
    if "variability" in main:
        v = main["variability"]
        d.add(
            doc.Paragraph(
                f"Heterogeneity (crossed random-intercept logit model, variational Bayes; "
                f"descriptive, not used for p-values): participant SD = {v.participant_sd:.2f}, "
                f"identity SD = {v.identity_sd:.2f} on the logit scale."
            )
        )

    d.add(doc.Heading("Confidence"))
    d.add(doc.Table(main["confident"], "Table III: share rated confident (rating > 1)."))
    if "confidence" in figs:
        d.add(figs["confidence"])
    ordinal = main["ordinal"]
    d.add(
        doc.Table(
            ordinal.coefficients,
            f"Proportional-odds model of confidence (reference method {ordinal.reference_method};"
            f" participant-clustered SEs, {ordinal.n_clusters} clusters).",
        )
    )
    if "calibration" in figs:
        d.add(figs["calibration"])
    a = main["auroc"]
    d.add(
        doc.Paragraph(
            f"Type-2 AUROC (confidence separating a participant's correct from wrong answers): "
            f"M = {a.mean:.3f}, 95% CI [{a.ci_low:.3f}, {a.ci_high:.3f}], "
            f"t({max(a.n_defined - 1, 0)}) = {a.t:.2f}, {prose.p_apa(a.p)} vs 0.5 "
            f"({a.n_undefined} participants without both kinds of answers left out)."
        )
    )

    if "sensitivity" in summary:
        d.add(doc.Heading("Sensitivity: everyone included"))
        d.add(
            doc.Table(
                summary["sensitivity"]["accuracy"],
                "Accuracy without exclusions (unverified and flagged participations stay out "
                "as in the main analysis).",
            )
        )

    pw = summary["power_at_this_n"]

    def pp(value: float) -> str:
        return "no" if math.isnan(value) else f"{value:.1f} pp"

    d.add(doc.Heading("Power at this sample size"))
    d.add(
        doc.Paragraph(
            f"With {pw['n_participants']} participants and {pw['questions_per_method']} questions "
            f"per method, a one-sided test at alpha = {pw['alpha']} detects, with power "
            f"{pw['power']:.0%}, accuracy {pp(pw['min_pp_above_chance'])} above chance, and "
            f"{pp(pw['min_pp_between_methods'])} difference between two methods (around "
            f"{pw['comparison_baseline']:.0%}, Bonferroni over 6 pairs). Analytic; assumes "
            "participant SD 0.8 and identity SD 0.5 on the logit scale."
        )
    )
    return d
