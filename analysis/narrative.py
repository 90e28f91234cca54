"""The report's document: its sections, in reading order, built from the computed numbers.

``report_document(summary, main, figures, config)`` turns what ``analysis.report.analyse``
computed into blocks (``analysis.documents``). The default numbers are crossed over
participants and faces (``analysis.crossed``); the participant-only ones have their own
section, labelled "conditional on these faces".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import documents as doc
from analysis import prose
from analysis.crossed import SMALL_FACE_POOL

if TYPE_CHECKING:
    from analysis.report import AnalysisConfig

DEFAULT_COLUMNS = [
    "method",
    "n_responses",
    "n_participants",
    "n_faces",
    "accuracy",
    "ci_low",
    "ci_high",
    "df",
    "matched_chance",
    "flat_chance",
]
CONDITIONAL_COLUMNS = [
    "method",
    "accuracy",
    "participant_mean",
    "gee_estimate",
    "gee_low",
    "gee_high",
    "bootstrap_low",
    "bootstrap_high",
    "wilson_low",
    "wilson_high",
]
ARRIVAL_LABELS = {
    "entered": "entered the study (opened the link)",
    "declined_consent": "declined consent",
    "left_before_questions": "left before the first question (returned or timed out)",
    "in_progress_before_questions": "still before the first question (session open)",
    "reached_questions": "reached at least one question (in the export)",
}


def report_document(
    summary: Mapping[str, Any],
    main: Mapping[str, Any],
    figs: Mapping[str, doc.Figure],
    config: AnalysisConfig,
    preface: Sequence[doc.Block] = (),
) -> doc.Document:
    """Assemble the report's blocks."""
    d = doc.Document(title=f"Visual matching study report: {', '.join(summary['study'])}")
    for block in preface:
        d.add(block)
    for section in (
        _participants,
        _accuracy,
        _comparisons,
        _conditional,
        _secondary,
        _confidence,
        _sensitivity,
        _power,
    ):
        for block in section(summary, main, figs, config):
            d.add(block)
    return d


Section = list[doc.Block]


def _participants(summary: Mapping[str, Any], main: Any, figs: Any, config: Any) -> Section:
    """Who arrived, who never reached a question, the exclusion steps, the speed flags."""
    blocks: Section = [doc.Heading("Participants and exclusions")]
    arrivals = summary.get("arrivals") or {}
    if arrivals:
        rows = [
            {"stage": ARRIVAL_LABELS.get(key, key), "participants": value}
            for key, value in arrivals.items()
        ]
        blocks.append(
            doc.Table(
                pd.DataFrame(rows),
                "Before the first question: participants who never answered a question are not "
                "in the response export; they are counted here.",
            )
        )
    blocks.append(
        doc.Paragraph(
            "Rules were fixed before analysis and never use accuracy. Attention items are "
            "removed from all analyses. Where the study ran on Prolific, participants whose "
            "SESSION_ID Prolific did not confirm (unverified) are left out, as are "
            "participations with integrity flags (flagged). Counts after each step:"
        )
    )
    blocks.append(doc.Table(summary["exclusions"]))
    speed = summary.get("speeders")
    if speed and speed["answers"]:
        blocks.append(
            doc.Paragraph(
                f"Speed flags (answers faster than the study's speeder threshold): "
                f"{speed['fast_answers']} of {speed['answers']} answers "
                f"({prose.pct(speed['fast_share'])}) from "
                f"{speed['participants_with_fast_answers']} participants; "
                f"{speed['participants_mostly_fast']} flagged on at least half of their answers. "
                f"Median time per answer {speed['median_seconds_per_answer']:.1f} s. Among "
                f"analysed answers: {speed['analysed_fast_answers']} flagged "
                f"({prose.pct(speed['analysed_fast_share'])}), "
                f"{speed['analysed_participants_mostly_fast']} participants flagged on half or "
                "more. The flags exclude nobody by themselves (the 'fast' rule judges a whole "
                "session's time)."
            )
        )
    return blocks


def _accuracy(
    summary: Mapping[str, Any], main: Mapping[str, Any], figs: Mapping[str, Any], config: Any
) -> Section:
    """The primary outcome: crossed accuracy, sentences, test against chance, effects."""
    accuracy = main["accuracy"]
    blocks: Section = [
        doc.Heading("Accuracy per method (primary outcome)"),
        doc.Paragraph(
            "Primary outcome: on target-present questions, at least one selected candidate is "
            "the target. Matched chance is the probability that the same number of random picks "
            "would hit a true candidate, 1 − C(K−m, s)/C(K, s); 1/K is the paper's baseline."
        ),
        doc.Paragraph(
            "Population: the intervals and tests below refer to new participants recruited "
            "like these, looking at new faces reconstructed the same way — not only to the "
            f"{_faces_text(accuracy)} shown (two-way participant × face cluster-robust, "
            "t(G − 1) with G = min(participants, faces))."
        ),
    ]
    small = accuracy[accuracy["n_faces"] < SMALL_FACE_POOL]
    if len(small):
        names = ", ".join(f"{r.method} ({r.n_faces})" for r in small.itertuples())
        blocks.append(
            doc.Paragraph(
                f"WARNING: few faces per method — {names}; fewer than {SMALL_FACE_POOL}. With so "
                "few faces the intervals are wide and rest on few effective clusters; more match "
                "sets (faces), not more participants, would narrow them."
            )
        )
    match_sets = summary.get("match_sets")
    if match_sets:
        blocks.append(doc.Paragraph(match_sets))
    if "accuracy" in figs:
        blocks.append(figs["accuracy"])
    blocks.append(
        doc.Table(
            accuracy[DEFAULT_COLUMNS],
            "Per-method accuracy (proportions), 95% CI crossed over participants and faces.",
        )
    )
    effects = main["effects"].set_index("method")
    for row, test in zip(accuracy.to_dict("records"), main["chance_tests"], strict=True):
        h = effects.loc[row["method"], "cohens_h"]
        blocks.append(doc.Paragraph(prose.accuracy_sentence(row, test, h)))
    blocks.append(
        doc.Table(
            pd.DataFrame([asdict(t) for t in main["chance_tests"]]),
            "Accuracy − matched chance (pooled), crossed over participants and faces; "
            "one-sided t(G − 1) test.",
        )
    )
    blocks.append(
        doc.Table(
            main["effects"],
            "Effect sizes: pp over matched and flat chance with crossed CIs, Cohen's h, and the "
            "participant-level d_z (conditional on these faces).",
            digits=2,
        )
    )
    return blocks


def _faces_text(accuracy: pd.DataFrame) -> str:
    counts = sorted({int(n) for n in accuracy["n_faces"]})
    joined = "–".join(str(n) for n in (counts[0], counts[-1])) if len(counts) > 1 else counts[0]
    return f"{joined} faces per method"


def _comparisons(
    summary: Any, main: Mapping[str, Any], figs: Mapping[str, Any], config: Any
) -> Section:
    """Omnibus and pairwise comparisons, crossed."""
    blocks: Section = [
        doc.Heading("Comparisons between methods"),
        doc.Paragraph(prose.omnibus_sentence(main["omnibus"])),
    ]
    for row in main["contrasts"].to_dict("records"):
        blocks.append(doc.Paragraph(prose.contrast_sentence(row)))
    if "contrasts" in figs:
        blocks.append(figs["contrasts"])
    blocks.append(
        doc.Table(
            main["contrasts"],
            "Pairwise contrasts (pp difference, crossed t(G − 1); Holm-adjusted p; odds ratios "
            "from the same pooled proportions).",
        )
    )
    return blocks


def _conditional(
    summary: Any, main: Mapping[str, Any], figs: Any, config: AnalysisConfig
) -> Section:
    """Participant-only results: conditional on these faces."""
    cond = main["conditional"]
    return [
        doc.Heading("Conditional on these faces (participants resampled only)"),
        doc.Paragraph(
            "These intervals and tests treat the faces shown as fixed: they answer 'how well "
            "do people recognise these particular reconstructions', and are too narrow for "
            "faces in general. GEE (Binomial, exchangeable, participant clusters, robust SE, "
            f"logit scale), participant-cluster bootstrap (BCa, {config.n_resamples} "
            "resamples), Wilson (independent responses; descriptive only)."
        ),
        doc.Table(main["accuracy"][CONDITIONAL_COLUMNS], "Accuracy, conditional on these faces."),
        doc.Table(
            pd.DataFrame([asdict(t) for t in cond["chance_tests"]]),
            "Accuracy − matched chance on participant means (one-sample t), conditional on "
            "these faces.",
        ),
        doc.Paragraph(
            prose.omnibus_sentence_conditional(cond["omnibus"], cond["gee"]["n_clusters"])
        ),
        doc.Table(cond["contrasts"], "Pairwise contrasts (GEE, Holm), conditional on these faces."),
        doc.Table(
            cond["wilcoxon_symmetry"],
            "Secondary, not a test of accuracy above chance: Wilcoxon signed-rank test that "
            "participants' (accuracy − chance) differences are symmetric about zero. With few "
            "binary questions a chance-level participant's difference is skewed, so this test "
            "calls chance-level methods 'above chance' far too often.",
        ),
    ]


def _secondary(summary: Any, main: Mapping[str, Any], figs: Any, config: Any) -> Section:
    """False alarms, precision, and heterogeneity."""
    blocks: Section = [
        doc.Heading("Secondary outcomes"),
        doc.Paragraph(
            "False alarms, precision, exact-set correctness and correct 'none' answers reveal "
            "selection strategies (e.g. ticking every candidate) that inflate the primary "
            "outcome."
        ),
        doc.Table(main["outcomes"], "Per-method response-level means."),
    ]
    if "variability" in main:
        v = main["variability"]
        blocks.append(
            doc.Paragraph(
                f"Heterogeneity (crossed random-intercept logit model, variational Bayes; "
                f"descriptive, not used for p-values): participant SD = {v.participant_sd:.2f}, "
                f"face SD = {v.identity_sd:.2f} on the logit scale."
            )
        )
    return blocks


def _confidence(
    summary: Any, main: Mapping[str, Any], figs: Mapping[str, Any], config: Any
) -> Section:
    """Table III, the ordinal model, calibration and type-2 AUROC."""
    blocks: Section = [
        doc.Heading("Confidence"),
        doc.Table(main["confident"], "Table III: share rated confident (rating > 1)."),
    ]
    if "confidence" in figs:
        blocks.append(figs["confidence"])
    ordinal = main["ordinal"]
    blocks.append(
        doc.Table(
            ordinal.coefficients,
            f"Proportional-odds model of confidence (reference method {ordinal.reference_method};"
            f" participant-clustered SEs, {ordinal.n_clusters} clusters).",
        )
    )
    if "calibration" in figs:
        blocks.append(figs["calibration"])
    a = main["auroc"]
    blocks.append(
        doc.Paragraph(
            f"Type-2 AUROC (confidence separating a participant's correct from wrong answers): "
            f"M = {a.mean:.3f}, 95% CI [{a.ci_low:.3f}, {a.ci_high:.3f}], "
            f"t({max(a.n_defined - 1, 0)}) = {a.t:.2f}, {prose.p_apa(a.p)} vs 0.5 "
            f"({a.n_undefined} participants without both kinds of answers left out)."
        )
    )
    return blocks


def _sensitivity(summary: Mapping[str, Any], main: Any, figs: Any, config: Any) -> Section:
    """Everyone included."""
    if "sensitivity" not in summary:
        return []
    return [
        doc.Heading("Sensitivity: everyone included"),
        doc.Table(
            summary["sensitivity"]["accuracy"][DEFAULT_COLUMNS],
            "Accuracy without exclusions, crossed CIs (unverified and flagged participations "
            "stay out as in the main analysis).",
        ),
    ]


def _power(summary: Mapping[str, Any], main: Any, figs: Any, config: Any) -> Section:
    """Smallest detectable effects at this study's participants and faces."""
    pw = summary["power_at_this_n"]

    def pp(value: float) -> str:
        return "no" if math.isnan(value) else f"{value:.1f} pp"

    text = (
        f"With {pw['n_participants']} participants, {pw['questions_per_method']} questions "
        f"and {pw['faces_per_method']} faces per method, the crossed one-sided test at alpha = "
        f"{pw['alpha']} detects, with power {pw['power']:.0%}, accuracy "
        f"{pp(pw['min_pp_above_chance'])} above chance, and {pp(pw['min_pp_between_methods'])} "
        f"difference between two methods (around {pw['comparison_baseline']:.0%}, Bonferroni "
        f"over 6 pairs). Analytic; participant SD {pw['participant_sd']:.2f} and face SD "
        f"{pw['face_sd']:.2f} on the logit scale. Faces contribute "
        f"{pw['share_of_variance_from_faces']:.0%} of the variance of a method's accuracy."
    )
    if pw["faces_bottleneck"]:
        text += (
            " Faces are the bottleneck: more match sets would buy more precision than more "
            "participants."
        )
    return [doc.Heading("Power at this sample size"), doc.Paragraph(text)]
