"""Metric 1 — top-K matching accuracy (Wenger et al., "Assessing privacy risks from feature
vector reconstruction attacks", §V; DESIGN.md "Metric 1"). Pure numpy, no database.

Definitions implemented here (per query x̃ with true identity P, gallery of N identities in
which P is always enrolled):

- the engine ranks gallery *images* by cosine similarity (``by="image"``, the default and
  the paper's reading: "F' returned ≥ 1 real image of P in top-K"); the top-K is the K best
  images, so one identity may fill several slots. ``by="identity"`` ranks identities by
  their best image instead (K distinct identities), as `Gallery.search(by="identity")`;
- **tp**: the top-K holds ≥ 1 image of P; **fp**: it holds only wrong identities;
- with a similarity threshold T, results below T are not returned: **no match** is a query
  with nothing ≥ T; tp needs P's image ≥ T and in the top-K; otherwise fp. So
  tpr + fpr + no-match = 1 (without a threshold no-match is 0);
- the query's source photo (the image the reconstruction was made from) is removed from the
  gallery (``include_source=False``); the other variant leaves it enrolled;
- ties follow `Gallery.search`: score descending, then pool row ascending — a wrong image
  tied with P's best image ranks ahead of it only when it sits on an earlier pool row.

Fast sweeps (`ScorePool`): all queries are scored once against the whole pool of candidate
gallery images; per query we keep P's best score t and, for every pool identity j, the
number of j's images ranked ahead of P's best (``ahead[q, j]``) and j's best score. A trial
draws N − 1 distractor identities D (shared by all queries, like one enrolled collection;
P added per query), and then P's rank is ``sum(ahead[q, D])`` — exactly the rank
`Gallery.search` would give over D + {P} — so every K is answered at once and a trial costs
one gather and a sum over a (Q, N) block.

Table II (the paper: "the percent of non-unique false positives (i.e. same class) for each
system/method pair"; caption "Percent of false positives which are from the same class"):
per (method, F'), among the false-positive queries of one gallery draw, each query's false
positive class is its top-1 (wrong) identity; a false positive is non-unique when another
false positive of the same method has the same class. The headline column is the share of
non-unique false positives (`non_unique_share`, ``fp_non_unique_share``), averaged over
draws; the share on the single most frequent class (`recurring_share`,
``fp_recurring_share``) is reported beside it. E.g. classes [a, a, a, b, c] give 3/5
non-unique and 3/5 recurring; [a, a, b, b, c] give 4/5 and 2/5.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "FP",
    "NO_MATCH",
    "TP",
    "Rates",
    "ScorePool",
    "TrialResult",
    "distractor_draw",
    "non_unique_share",
    "outcomes_from_ranked",
    "percentile_interval",
    "ranked_trial",
    "rates",
    "recurring_share",
    "wilson_interval",
]

TP, FP, NO_MATCH = 0, 1, 2
OUTCOME_NAMES = ("tp", "fp", "no_match")
Ranking = Literal["image", "identity"]
PAPER_KS = (5, 10, 15, 20, 25, 30, 35, 40)
PAPER_NS = (50, 100, 500, 1000, 2500, 5000)


@dataclass(frozen=True)
class Rates:
    """Shares of the three outcomes over ``n`` queries (they sum to 1)."""

    tpr: float
    fpr: float
    no_match: float
    n: int


def outcomes_from_ranked(
    labels: np.ndarray,
    scores: np.ndarray,
    truth: Sequence[int] | np.ndarray,
    *,
    k: int,
    threshold: float | None = None,
) -> np.ndarray:
    """Outcome code (TP, FP, NO_MATCH) per query from an engine's ranked results.

    ``labels``/``scores``: (Q, ≥k) identity labels and similarities, best first, padded with
    label -1 (e.g. `TopK.labels`, or a commercial engine's matches); the engine's order is
    taken as given. Results below ``threshold`` are dropped before the top-``k`` cut.
    """
    labels = np.atleast_2d(np.asarray(labels))[:, :k]
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))[:, :k]
    truth = np.asarray(truth).reshape(-1, 1)
    returned = labels >= 0
    if threshold is not None:
        returned &= scores >= threshold
    hit = (returned & (labels == truth)).any(axis=1)
    empty = ~returned.any(axis=1)
    return np.where(hit, TP, np.where(empty, NO_MATCH, FP)).astype(np.int8)


def rates(outcomes: np.ndarray) -> Rates:
    """tpr, fpr and no-match share of a vector of outcome codes."""
    outcomes = np.asarray(outcomes).ravel()
    n = len(outcomes)
    if not n:
        return Rates(math.nan, math.nan, math.nan, 0)
    counts = np.bincount(outcomes, minlength=3)
    return Rates(counts[TP] / n, counts[FP] / n, counts[NO_MATCH] / n, n)


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial share (``z`` = 1.96: 95 %)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentile_interval(values: Iterable[float], *, level: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of per-trial values (the spread over gallery draws)."""
    array = np.asarray(list(values), dtype=np.float64)
    if not len(array):
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(array, [tail, 100 - tail])
    return (float(low), float(high))


def non_unique_share(top1_of_false_positives: Sequence[int]) -> float:
    """Table II's headline: the share of false positives whose class (top-1 wrong identity)
    is also the class of at least one other false positive (NaN without false positives)."""
    counts = Counter(int(x) for x in top1_of_false_positives)
    total = sum(counts.values())
    return sum(c for c in counts.values() if c > 1) / total if total else math.nan


def recurring_share(top1_of_false_positives: Sequence[int]) -> float:
    """The share of false positives on the most frequent class (top-1 wrong identity), the
    second Table II column (NaN without false positives)."""
    counts = Counter(int(x) for x in top1_of_false_positives)
    total = sum(counts.values())
    return max(counts.values()) / total if total else math.nan


@dataclass(frozen=True)
class TrialResult:
    """One gallery draw at one N: outcome codes (Q, len(ks)) and top-1 identities (Q,)."""

    n: int
    trial: int
    ks: tuple[int, ...]
    outcomes: np.ndarray  # (Q, len(ks)) int8
    top1: np.ndarray  # (Q,) identity label ranked first (-1: nothing returned)


class ScorePool:
    """Queries scored once against a pool of gallery candidates, for fast gallery draws.

    ``pool``: (P, D) L2-normalised vectors with identity ``pool_labels`` and
    ``pool_image_ids``; ``queries``: (Q, D) with true identity ``truth`` and source image id
    ``sources`` (-1: none), excluded from the gallery unless ``include_source``. Every true
    identity must have ≥ 1 pool image left after the exclusion.
    """

    def __init__(
        self,
        queries: np.ndarray,
        *,
        truth: Sequence[int] | np.ndarray,
        sources: Sequence[int] | np.ndarray,
        pool: np.ndarray,
        pool_labels: Sequence[int] | np.ndarray,
        pool_image_ids: Sequence[int] | np.ndarray,
        include_source: bool = False,
    ) -> None:
        queries = _normalized(queries)  # (Q, D)
        pool = _normalized(pool)  # (P, D)
        pool_labels = np.asarray(pool_labels, dtype=np.int64)
        pool_image_ids = np.asarray(pool_image_ids, dtype=np.int64)
        truth = np.asarray(truth, dtype=np.int64)
        sources = np.asarray(sources, dtype=np.int64)
        self.identities, column = np.unique(pool_labels, return_inverse=True)  # (I,), (P,)
        self.truth = truth
        count, identities = len(queries), len(self.identities)
        scores = queries @ pool.T  # (Q, P)
        if not include_source:
            excluded = (pool_image_ids[None, :] == sources[:, None]) & (sources[:, None] >= 0)
            scores[excluded] = -np.inf
        is_true = pool_labels[None, :] == truth[:, None]  # (Q, P)
        true_scores = np.where(is_true, scores, -np.inf)
        self.true_best = true_scores.max(axis=1)  # (Q,)
        if np.isneginf(self.true_best).any():
            missing = truth[np.isneginf(self.true_best)]
            raise ValueError(f"true identities without a gallery image: {sorted(set(missing))}")
        rows = np.arange(pool.shape[0])
        # The lowest pool row among P's images tied at its best score (Gallery.search order).
        true_row = np.where(true_scores == self.true_best[:, None], rows, len(rows)).min(axis=1)
        ahead = (scores > self.true_best[:, None]) | (
            (scores == self.true_best[:, None]) & (rows[None, :] < true_row[:, None])
        )
        ahead &= ~is_true
        order = np.argsort(column, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(column[order]) != 0])
        self.ahead = np.add.reduceat(ahead[:, order], starts, axis=1).astype(np.int32)  # (Q, I)
        self.best = np.maximum.reduceat(scores[:, order], starts, axis=1)  # (Q, I)
        self.true_column = np.searchsorted(self.identities, truth)  # (Q,)
        if not np.array_equal(self.identities[self.true_column], truth):
            raise ValueError("a true identity has no image in the pool")
        self.best[np.arange(count), self.true_column] = -np.inf  # "best wrong" per identity
        self.queries = count
        self.size = identities

    def distractor_columns(self, exclude_labels: Iterable[int] = ()) -> np.ndarray:
        """Pool identity columns eligible as distractors (never a query's true identity)."""
        banned = np.union1d(self.truth, np.fromiter(exclude_labels, dtype=np.int64))
        return np.flatnonzero(~np.isin(self.identities, banned))

    def evaluate(
        self,
        distractors: np.ndarray,
        *,
        ks: Sequence[int],
        threshold: float | None = None,
        by: Ranking = "image",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Outcomes (Q, len(ks)) and top-1 labels (Q,) over gallery D + {P} per query.

        ``distractors``: pool identity columns D (without any query's true identity).
        """
        block = self.ahead[:, distractors]  # (Q, |D|)
        rank = (block > 0).sum(axis=1) if by == "identity" else block.sum(axis=1)  # (Q,)
        ks_array = np.asarray(ks)[None, :]
        hit = rank[:, None] < ks_array  # (Q, len(ks))
        best_wrong = self.best[:, distractors]  # (Q, |D|)
        if best_wrong.shape[1]:
            top_wrong = distractors[best_wrong.argmax(axis=1)]
            wrong_score = best_wrong.max(axis=1)
        else:
            top_wrong = np.full(self.queries, -1)
            wrong_score = np.full(self.queries, -np.inf)
        if threshold is None:
            outcomes = np.where(hit, TP, FP)
            empty = np.zeros(self.queries, dtype=bool)
        else:
            hit &= (self.true_best >= threshold)[:, None]
            empty = np.maximum(self.true_best, wrong_score) < threshold
            outcomes = np.where(hit, TP, np.where(empty[:, None], NO_MATCH, FP))
        first_is_true = rank == 0
        top1 = np.where(
            first_is_true,
            self.truth,
            np.where(top_wrong >= 0, self.identities[np.maximum(top_wrong, 0)], -1),
        )
        top1 = np.where(empty, -1, top1)
        return outcomes.astype(np.int8), top1

    def draw(
        self,
        *,
        n: int,
        ks: Sequence[int],
        trials: int,
        rng: np.random.Generator,
        threshold: float | None = None,
        by: Ranking = "image",
        eligible: np.ndarray | None = None,
    ) -> list[TrialResult]:
        """``trials`` random galleries of ``n`` identities (P + n − 1 distractors each)."""
        eligible = self.distractor_columns() if eligible is None else eligible
        if n - 1 > len(eligible):
            raise ValueError(f"N = {n} needs {n - 1} distractor identities, {len(eligible)} exist")
        results = []
        for trial in range(trials):
            chosen = rng.choice(eligible, size=n - 1, replace=False)
            outcomes, top1 = self.evaluate(chosen, ks=ks, threshold=threshold, by=by)
            results.append(TrialResult(n, trial, tuple(ks), outcomes, top1))
        return results


def distractor_draw(
    pool_labels: Sequence[int] | np.ndarray, truth: Sequence[int] | np.ndarray, *, n: int, seed: int
) -> np.ndarray:
    """Identity labels of the N − 1 distractors of the first gallery draw at ``n``.

    The same identities as trial 1 of `ScorePool.draw` with ``rng = default_rng([seed, n])``
    (what `topk_evaluate` uses), for engines that enrol a single gallery: eligible are the
    pool identities that are no query's true identity.
    """
    identities = np.unique(np.asarray(pool_labels, dtype=np.int64))
    eligible = np.flatnonzero(~np.isin(identities, np.asarray(truth, dtype=np.int64)))
    if n - 1 > len(eligible):
        raise ValueError(f"N = {n} needs {n - 1} distractor identities, {len(eligible)} exist")
    rng = np.random.default_rng([seed, n])
    return identities[rng.choice(eligible, size=n - 1, replace=False)]


def ranked_trial(
    labels: np.ndarray,
    scores: np.ndarray,
    truth: Sequence[int] | np.ndarray,
    *,
    n: int,
    ks: Sequence[int],
    threshold: float | None = None,
) -> TrialResult:
    """One gallery draw's `TrialResult` from an engine's ranked answers (for `summarize`).

    ``labels``/``scores``: (Q, ≥ max K) as for `outcomes_from_ranked`, e.g. from
    `engines.ranked_matrix`; every K is cut from the same ranking.
    """
    labels = np.atleast_2d(np.asarray(labels))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    outcomes = np.stack(
        [outcomes_from_ranked(labels, scores, truth, k=k, threshold=threshold) for k in ks],
        axis=1,
    )  # (Q, len(ks))
    first_returned = labels[:, 0] >= 0
    if threshold is not None:
        first_returned &= scores[:, 0] >= threshold
    top1 = np.where(first_returned, labels[:, 0], -1)
    return TrialResult(n, 0, tuple(ks), outcomes.astype(np.int8), top1)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


# --- Summaries and files ------------------------------------------------------------------


def summarize(
    results: Sequence[TrialResult], *, group: np.ndarray | None = None
) -> list[dict[str, object]]:
    """Long rows per (query group, N, K): mean rates over trials, intervals, Table II share.

    ``group``: (Q,) names (e.g. "eigenfaces", "photo", "random"); all one group if None.
    """
    if not results:
        return []
    queries = len(results[0].outcomes)
    group = np.asarray(["all"] * queries if group is None else group, dtype=object)
    rows: list[dict[str, object]] = []
    by_n: dict[int, list[TrialResult]] = {}
    for result in results:
        by_n.setdefault(result.n, []).append(result)
    for name in dict.fromkeys(group.tolist()):
        mask = group == name
        for n, trials in by_n.items():
            for position, k in enumerate(trials[0].ks):
                per_trial = [rates(t.outcomes[mask, position]) for t in trials]
                pooled = np.concatenate([t.outcomes[mask, position] for t in trials])
                classes = [
                    t.top1[mask][t.outcomes[mask, position] == FP]
                    for t in trials
                    if (t.outcomes[mask, position] == FP).any()
                ]
                row: dict[str, object] = {"group": name, "n": n, "k": k}
                for field, code in (("tpr", TP), ("fpr", FP), ("no_match", NO_MATCH)):
                    values = [getattr(r, field) for r in per_trial]
                    low, high = percentile_interval(values)
                    w_low, w_high = wilson_interval(int((pooled == code).sum()), len(pooled))
                    row |= {
                        field: float(np.mean(values)),
                        f"{field}_p2.5": low,
                        f"{field}_p97.5": high,
                        f"{field}_wilson_low": w_low,
                        f"{field}_wilson_high": w_high,
                    }
                row["fp_non_unique_share"] = (
                    float(np.mean([non_unique_share(c) for c in classes])) if classes else math.nan
                )
                row["fp_recurring_share"] = (
                    float(np.mean([recurring_share(c) for c in classes])) if classes else math.nan
                )
                row["queries"] = int(mask.sum())
                row["trials"] = len(trials)
                rows.append(row)
    return rows
