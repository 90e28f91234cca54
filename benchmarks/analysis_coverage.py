"""Coverage of the report's default intervals against the population truth, and report timing.

Run from the repository root:
    PYTHONPATH=. .venv/bin/python benchmarks/analysis_coverage.py [--studies 200]

Each simulated study (``analysis.simulation``): 200 participants × 4 methods × 5 questions,
participant SD 0.8 and face SD 0.6 on the logit scale, a face pool of 20 or 100 match sets
per method (item t of every method shows identity t), every answer a single pick. Methods:
``strong`` (population accuracy 0.60), ``pair_a`` and ``pair_b`` (both 0.35: a true-null
pair) and ``at_chance`` (0.20 = matched chance, with participant *and* face heterogeneity:
some faces are recognised above chance, others mislead). The truth is the population value
— new participants and new faces — never the accuracy given the simulated faces.

Scored per scenario, for the report's defaults (``analysis.crossed``): the accuracy interval
per method, the interval of accuracy − matched chance per method, the interval of every
pairwise difference, the one-sided test above chance for ``at_chance`` (alpha = .05) and the
two-sided Holm-unadjusted test of the null pair. For contrast, the participant-only
("conditional on these faces") GEE interval and participant-mean t test are scored against
the same population truth.

Exit status 1, with the failing figures named, when a default interval's coverage, or a kind's
coverage pooled over its methods or pairs, is outside 93–97% beyond its Monte Carlo error
(95%; a study's intervals are correlated, so the pooled error comes from per-study means), or
when the at-chance false-positive rate or the null pair's rejection rate exceeds 7%. Figures
outside the band but within Monte Carlo error are marked; with 200 studies a calibrated 95%
interval lands outside 93–97% about one time in seven, so run ``--studies 1000`` to tell
miscalibration from noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.chance import chance_tests
from analysis.crossed import accuracy_intervals, chance_tests_crossed, fit_crossed, pairwise_crossed
from analysis.estimates import fit_gee, present_responses
from analysis.outcomes import add_outcomes
from analysis.report import AnalysisConfig, build_report
from analysis.simulation import SimulationConfig, simulate_long_responses

ACCURACIES: tuple[tuple[str, float], ...] = (
    ("strong", 0.60),
    ("pair_a", 0.35),
    ("pair_b", 0.35),
    ("at_chance", 0.20),
)
CHANCE = 0.2  # single picks among K = 5 with one true candidate
NULL_PAIR = ("pair_a", "pair_b")
BAND = (0.93, 0.97)
MAX_FALSE_POSITIVE = 0.07


def scenario_config(faces: int) -> SimulationConfig:
    """The issue's scenario: 200 × 5 per method, SDs 0.8 / 0.6, single picks, ``faces`` pool."""
    return SimulationConfig(
        n_participants=200,
        accuracies=ACCURACIES,
        questions_per_method=5,
        items_per_method=faces,
        participant_sd=0.8,
        identity_sd=0.6,
        p_target_absent=0.0,
        p_none_when_unsure=0.0,
        attention_items=0,
        returned_share=0.0,
    )


def one_study(args: tuple[int, int]) -> dict[str, object]:
    """Simulate and analyse one study; one flat row of hits."""
    seed, faces = args
    raw = simulate_long_responses(scenario_config(faces), seed)
    present = present_responses(add_outcomes(raw))
    fit = fit_crossed(present)
    acc = accuracy_intervals(fit).set_index("method")
    gaps = {t.method: t for t in chance_tests_crossed(fit)}
    pairs = pairwise_crossed(fit).set_index(["method_a", "method_b"])
    gee = fit_gee(present)
    gee_low, gee_high = gee.interval()
    conditional_t = {t.method: t for t in chance_tests(present)}
    truth = dict(ACCURACIES)
    row: dict[str, object] = {"faces": faces, "seed": seed}
    for method, value in ACCURACIES:
        row[f"acc:{method}"] = acc.loc[method, "ci_low"] <= value <= acc.loc[method, "ci_high"]
        gap = gaps[method]
        row[f"gap:{method}"] = gap.ci_low <= value - CHANCE <= gap.ci_high
        k = gee.methods.index(method)
        row[f"gee:{method}"] = gee_low[k] <= value <= gee_high[k]
    for (a, b), rec in pairs.iterrows():
        diff = 100 * (truth[a] - truth[b])
        row[f"pair:{a}-{b}"] = rec["diff_low_pp"] <= diff <= rec["diff_high_pp"]
    row["fp_at_chance"] = gaps["at_chance"].p_greater < 0.05
    row["fp_at_chance_conditional"] = conditional_t["at_chance"].p_greater < 0.05
    row["null_pair_rejected"] = pairs.loc[NULL_PAIR, "p"] < 0.05
    return row


def _mc_half(value: float, n: int) -> float:
    """Half-width of a normal-approximation 95% Monte Carlo interval of a rate."""
    return 1.96 * float(np.sqrt(max(value * (1 - value), 1e-12) / n))


def verdicts(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The coverage table per scenario and the list of failures."""
    failures: list[str] = []
    rows = []
    for faces, group in results.groupby("faces"):
        n = len(group)
        for kind in ("acc", "gap", "pair"):
            cols = [col for col in group if str(col).startswith(f"{kind}:")]
            per_study = group[cols].to_numpy(dtype=float).mean(axis=1)
            pooled = float(per_study.mean())
            # A study's intervals share its participants and faces, so they are correlated:
            # the Monte Carlo error of the pooled figure comes from the per-study means.
            pooled_half = 1.96 * float(per_study.std(ddof=1)) / np.sqrt(n)
            pooled_status = "ok"
            if not BAND[0] <= pooled <= BAND[1]:
                beyond = pooled + pooled_half < BAND[0] or pooled - pooled_half > BAND[1]
                pooled_status = "OUTSIDE" if beyond else "outside, within MC error"
                if beyond:
                    failures.append(
                        f"{faces} faces: {kind} intervals cover {pooled:.3f} ± {pooled_half:.3f}"
                    )
            for col in cols:
                value = float(group[col].mean())
                half = _mc_half(value, n)
                status = "ok"
                if not BAND[0] <= value <= BAND[1]:
                    beyond = value + half < BAND[0] or value - half > BAND[1]
                    status = "OUTSIDE" if beyond else "outside, within MC error"
                    if beyond:
                        failures.append(f"{faces} faces: {col} covers {value:.3f} ± {half:.3f}")
                rows.append({"faces": faces, "interval": col, "coverage": value, "status": status})
            rows.append(
                {
                    "faces": faces,
                    "interval": f"{kind}: pooled",
                    "coverage": pooled,
                    "status": f"{pooled_status} (MC ± {pooled_half:.3f})",
                }
            )
        for col in ("fp_at_chance", "null_pair_rejected"):
            value = float(group[col].mean())
            if value > MAX_FALSE_POSITIVE:
                failures.append(f"{faces} faces: {col} = {value:.3f} > {MAX_FALSE_POSITIVE}")
            rows.append({"faces": faces, "interval": col, "coverage": value, "status": "≤ 0.07"})
        for col in [x for x in group if str(x).startswith("gee:")] + ["fp_at_chance_conditional"]:
            rows.append(
                {
                    "faces": faces,
                    "interval": col,
                    "coverage": float(group[col].mean()),
                    "status": "conditional (for contrast)",
                }
            )
    return pd.DataFrame(rows), failures


def main() -> None:
    """Print the coverage table, the report timing, and fail loudly on miscalibration."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per scenario")
    parser.add_argument("--faces", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--first-seed", type=int, default=10_000)
    args = parser.parse_args()

    start = time.perf_counter()
    jobs = [(args.first_seed + s, f) for f in args.faces for s in range(args.studies)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = pd.DataFrame(list(pool.map(one_study, jobs, chunksize=4)))
    elapsed = time.perf_counter() - start
    table, failures = verdicts(results)
    print(
        f"{args.studies} simulated studies per scenario (200 participants × 4 methods × 5 "
        f"questions; participant SD 0.8, face SD 0.6; face pools {args.faces}), "
        f"{elapsed:.0f} s on {args.workers} workers"
    )
    with pd.option_context("display.max_rows", None, "display.width", 120):
        print(table.to_string(index=False, float_format="{:.3f}".format))
    print(
        f"Monte Carlo SE of a 95% coverage over {args.studies} studies: "
        f"{np.sqrt(0.95 * 0.05 / args.studies):.3f}"
    )

    df = simulate_long_responses(SimulationConfig.messy(n_participants=200), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_report(df, AnalysisConfig(), Path(tmp))
        report_s = time.perf_counter() - start
    print(f"build_report on {len(df)} responses (1999 BCa resamples, figures): {report_s:.1f} s")
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        sys.exit(1)
    print("PASSED: no coverage outside 93–97% beyond Monte Carlo error; false positives ≤ 7%.")


if __name__ == "__main__":
    main()
