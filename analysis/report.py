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
from analysis import figures
from analysis.chance import chance_tests, participant_chance_differences, wilcoxon_symmetry
from analysis.comparisons import omnibus_wald, pairwise_contrasts
from analysis.confidence import (
    calibration_table,
    confident_shares,
    ordinal_confidence,
    summarise_auroc,
    type2_auroc,
)
from analysis.crossed import (
    chance_tests_crossed,
    fit_crossed,
    omnibus_crossed,
    pairwise_crossed,
)
from analysis.effects import effect_sizes
from analysis.estimates import fit_gee, method_accuracy, present_responses
from analysis.exclusions import ExclusionConfig, apply_exclusions, speeder_summary
from analysis.narrative import report_document
from analysis.outcomes import add_outcomes, outcome_summary
from analysis.power import PowerResult, power
from analysis.variability import random_effect_sds

INFERENCE = (
    "Default intervals and tests are crossed over participants and faces (two-way "
    "participant × face cluster-robust, CR1, t(G − 1) with G = min(participants, faces)): they "
    "refer to new participants recruited like these looking at new faces reconstructed the "
    "same way, not only to the faces shown. Participant-only results (GEE, participant "
    "bootstrap, t tests on participant means) are conditional on these faces."
)


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
    crossed = fit_crossed(present, gee.methods)
    accuracy = method_accuracy(
        df, level=level, n_resamples=config.n_resamples, seed=config.seed, gee=gee, crossed=crossed
    )
    tests = chance_tests_crossed(crossed, level=level)
    participant_tests = chance_tests(df, confidence_level=level)
    result: dict[str, Any] = {
        "outcomes": outcome_summary(df),
        "accuracy": accuracy,
        "chance_tests": tests,
        "effects": effect_sizes(accuracy, tests, participant_tests),
        "omnibus": omnibus_crossed(crossed),
        "contrasts": pairwise_crossed(crossed, level=level),
        "conditional": {
            "gee": {
                "n_clusters": gee.n_clusters,
                "n_obs": gee.n_obs,
                "working_correlation": gee.working_correlation,
            },
            "chance_tests": participant_tests,
            "omnibus": omnibus_wald(gee),
            "contrasts": pairwise_contrasts(gee, level=level),
            "wilcoxon_symmetry": wilcoxon_symmetry(df),
        },
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
    arrivals: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Run every analysis on the long export and write the report folder; return the summary.

    ``preface`` blocks open the report (e.g. the pre-registration status), ``appendix``
    blocks close it, and ``extra`` entries join the summary; they come from callers that
    know the study (``analysis.services``). ``arrivals`` counts the participants who never
    reached a question (they are not in the export), by reason; they open the exclusion flow.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = add_outcomes(df)
    excluded = apply_exclusions(data, config.exclusions)
    main = analyse(excluded.data, config)
    k = int(data[c.K].mode().iloc[0])
    planned = _power_at_this_n(excluded.data, main, k)
    summary: dict[str, Any] = {
        "study": sorted(data[c.STUDY].astype(str).unique().tolist()),
        "k": k,
        "inference": INFERENCE,
        "arrivals": dict(arrivals or {}),
        "exclusions": excluded.steps_table(),
        "excluded_participants": {rule: list(who) for rule, who in excluded.removed.items()},
        "speeders": speeder_summary(data, excluded.data),
        **{name: value for name, value in main.items() if name != "participant_means"},
        "power_at_this_n": planned.as_dict(),
    }
    if config.sensitivity:
        summary["sensitivity"] = _sensitivity(data, config)
    figure_blocks: dict[str, doc.Figure] = {}
    if config.figures and len(excluded.data):
        figure_blocks = _figures(main, excluded.data, k, out_dir / "figures")
        summary["figures"] = {
            name: [str(b.png.relative_to(out_dir)), str(b.svg.relative_to(out_dir))]
            for name, b in figure_blocks.items()
        }
    _write_responses_long(data, excluded.data, out_dir)
    summary.update(extra or {})
    plain = _jsonable(summary)
    _write_json(plain, config, out_dir)
    document = report_document(summary, main, figure_blocks, config, preface)
    for block in appendix:
        document.add(block)
    (out_dir / "report.md").write_text(doc.to_markdown(document, out_dir), encoding="utf-8")
    (out_dir / "report.html").write_text(doc.to_html(document), encoding="utf-8")
    return plain


def _power_at_this_n(kept: pd.DataFrame, main: Mapping[str, Any], k: int) -> PowerResult:
    """Power of the study's design at its analysed N, with its own heterogeneity if fitted."""
    n_per_method = int(kept.groupby([c.PARTICIPANT, c.METHOD]).size().median() if len(kept) else 5)
    faces = int(main["accuracy"]["n_faces"].median()) if len(main["accuracy"]) else 1
    return power(
        max(kept[c.PARTICIPANT].nunique(), 3),
        questions_per_method=max(n_per_method, 1),
        faces_per_method=max(faces, 2),
        chance=1 / k,
        **_heterogeneity(main),
    )


def _sensitivity(data: pd.DataFrame, config: AnalysisConfig) -> dict[str, Any]:
    """The main accuracy estimates and chance tests again, with everyone included."""
    everyone = apply_exclusions(data, config.exclusions.sensitivity_variant())
    present = present_responses(everyone.data)
    crossed = fit_crossed(present)
    sens = method_accuracy(
        everyone.data,
        level=config.confidence_level,
        n_resamples=config.n_resamples,
        seed=config.seed,
        crossed=crossed,
    )
    return {
        "exclusions": everyone.steps_table(),
        "accuracy": sens,
        "chance_tests": chance_tests_crossed(crossed, config.confidence_level),
    }


def _figures(
    main: Mapping[str, Any], kept: pd.DataFrame, k: int, fig_dir: Path
) -> dict[str, doc.Figure]:
    """Draw the report's figures into ``fig_dir``; their blocks by name."""
    made = {
        "accuracy": (
            figures.plot_accuracy(main["participant_means"], main["accuracy"], k, fig_dir),
            figures.FIG7_CAPTION,
        ),
        "confidence": (
            figures.plot_confidence_bars(kept, fig_dir),
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
            "Pairwise method contrasts: odds ratios with 95% CIs crossed over participants "
            "and faces, and Holm-adjusted p-values.",
        ),
    }
    return {
        name: doc.Figure(png=paths[0], svg=paths[1], caption=caption)
        for name, (paths, caption) in made.items()
    }


def _write_responses_long(data: pd.DataFrame, kept: pd.DataFrame, out_dir: Path) -> None:
    """responses_long.csv: every response with its derived columns and whether it was analysed."""
    long = data.copy()
    analysed_keys = set(zip(kept[c.PARTICIPANT], kept[c.POSITION], strict=True))
    long["analysed"] = [
        (p, pos) in analysed_keys
        for p, pos in zip(long[c.PARTICIPANT], long[c.POSITION], strict=True)
    ]
    long.to_csv(out_dir / "responses_long.csv", index=False)


def _write_json(plain: dict[str, Any], config: AnalysisConfig, out_dir: Path) -> None:
    """summary.json (every number) and config.json (the settings)."""
    (out_dir / "summary.json").write_text(
        json.dumps(plain, indent=2, allow_nan=False), encoding="utf-8"
    )
    (out_dir / "config.json").write_text(
        json.dumps(_jsonable(config.as_dict()), indent=2), encoding="utf-8"
    )


def _heterogeneity(main: Mapping[str, Any]) -> dict[str, float]:
    """The study's own participant and face SDs (logit) for the power figures, if fitted."""
    v = main.get("variability")
    if v is None or not (math.isfinite(v.participant_sd) and math.isfinite(v.identity_sd)):
        return {}
    return {"participant_sd": float(v.participant_sd), "face_sd": float(v.identity_sd)}


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
