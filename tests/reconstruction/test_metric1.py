"""Metric 1 on hand-computed cases: outcomes, exclusion, ties, thresholds and Table II."""

import math

import numpy as np
import pytest

from reconstruction.metric1.gallery import Gallery
from reconstruction.metric1.scoring import (
    FP,
    NO_MATCH,
    TP,
    ScorePool,
    non_unique_share,
    outcomes_from_ranked,
    percentile_interval,
    rates,
    recurring_share,
    summarize,
    wilson_interval,
)


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_ranked_outcomes_count_a_hit_anywhere_in_the_top_k():
    labels = np.array([[1, 2, 3], [2, 3, 4], [5, 6, 7]])
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, 0.8, 0.7]])
    truth = [3, 1, 5]
    assert outcomes_from_ranked(labels, scores, truth, k=2).tolist() == [FP, FP, TP]
    assert outcomes_from_ranked(labels, scores, truth, k=3).tolist() == [TP, FP, TP]
    r = rates(outcomes_from_ranked(labels, scores, truth, k=3))
    assert (r.tpr, r.fpr, r.no_match, r.n) == (pytest.approx(2 / 3), pytest.approx(1 / 3), 0, 3)


def test_threshold_makes_no_match_a_third_outcome_and_the_shares_sum_to_one():
    labels = np.array([[1, 2], [2, 1], [3, 4], [5, -1]])
    scores = np.array([[0.9, 0.2], [0.6, 0.4], [0.3, 0.1], [0.45, -np.inf]])
    truth = [1, 1, 4, 5]
    outcomes = outcomes_from_ranked(labels, scores, truth, k=2, threshold=0.5)
    # q1: the true face (0.4) is below T, the wrong one above: a false positive.
    assert outcomes.tolist() == [TP, FP, NO_MATCH, NO_MATCH]
    r = rates(outcomes)
    assert r.tpr + r.fpr + r.no_match == pytest.approx(1)
    assert (r.tpr, r.fpr, r.no_match) == (0.25, 0.25, 0.5)


def small_pool(include_source: bool) -> ScorePool:
    # Identity 10: image 100 is the query's source (identical to it), 101 at 40°.
    # Identity 20: image 200 at 20° (beats 101); identity 30: image 300 at 80°.
    return ScorePool(
        np.array([unit(0)]),
        truth=[10],
        sources=[100],
        pool=np.array([unit(0), unit(40), unit(20), unit(80)]),
        pool_labels=[10, 10, 20, 30],
        pool_image_ids=[100, 101, 200, 300],
        include_source=include_source,
    )


def test_source_image_is_excluded_unless_the_included_variant_is_asked():
    excluded = small_pool(include_source=False)
    outcomes, top1 = excluded.evaluate(np.array([1, 2]), ks=[1, 2, 3])
    assert outcomes.tolist() == [[FP, TP, TP]]  # 200 ranks above 101
    assert top1.tolist() == [20]
    included = small_pool(include_source=True)
    outcomes, top1 = included.evaluate(np.array([1, 2]), ks=[1, 2, 3])
    assert outcomes.tolist() == [[TP, TP, TP]]
    assert top1.tolist() == [10]


def test_distractors_left_out_of_the_draw_do_not_count():
    outcomes, _ = small_pool(include_source=False).evaluate(np.array([2]), ks=[1])
    assert outcomes.tolist() == [[TP]]  # identity 20 not enrolled in this gallery


def test_true_identity_without_a_gallery_image_is_refused():
    with pytest.raises(ValueError, match="without a gallery image"):
        ScorePool(
            np.array([unit(0)]),
            truth=[10],
            sources=[100],
            pool=np.array([unit(0), unit(20)]),
            pool_labels=[10, 20],
            pool_image_ids=[100, 200],
        )


def test_ties_go_to_the_earlier_pool_row_like_gallery_search():
    # The wrong image on row 0 ties with the true one on row 1: it ranks first.
    pool = np.array([unit(30), unit(30), unit(30)])
    scored = ScorePool(
        np.array([unit(0)]),
        truth=[2],
        sources=[-1],
        pool=pool,
        pool_labels=[1, 2, 3],
        pool_image_ids=[10, 20, 30],
    )
    outcomes, _ = scored.evaluate(np.array([0, 1]), ks=[1, 2])
    assert outcomes.tolist() == [[FP, TP]]  # row 0 ahead, row 2 behind
    top = Gallery(pool, labels=[1, 2, 3], image_ids=[10, 20, 30], backend="torch").search(
        np.array([unit(0)]), k=1
    )
    assert top.labels.tolist() == [[1]]


@pytest.mark.parametrize("by", ["image", "identity"])
@pytest.mark.parametrize("include_source", [False, True])
def test_fast_pool_agrees_with_exact_gallery_search(by, include_source):
    rng = np.random.default_rng(3)
    identities = 40
    labels = np.repeat(np.arange(identities), 3)
    # Coarse values make exact ties common.
    pool = rng.integers(-2, 3, size=(len(labels), 4)).astype(np.float32)
    pool[np.linalg.norm(pool, axis=1) == 0] = 1
    image_ids = np.arange(len(labels)) + 1000
    truth = np.array([0, 1, 2, 3, 4, 5])
    sources = image_ids[truth * 3]
    queries = pool[truth * 3] + rng.normal(0, 0.5, size=(len(truth), 4)).astype(np.float32)
    scored = ScorePool(
        queries,
        truth=truth,
        sources=sources,
        pool=pool,
        pool_labels=labels,
        pool_image_ids=image_ids,
        include_source=include_source,
    )
    distractors = scored.distractor_columns()[::2]  # identity labels 6, 8, …
    ks = [1, 2, 3, 5]
    outcomes, _ = scored.evaluate(distractors, ks=ks, by=by)
    for q in range(len(truth)):
        enrolled = np.isin(labels, [truth[q], *scored.identities[distractors]])
        gallery = Gallery(
            pool[enrolled], labels=labels[enrolled], image_ids=image_ids[enrolled], backend="torch"
        )
        exclude = [[] if include_source else [sources[q]]]
        for position, k in enumerate(ks):
            top = gallery.search(queries[q : q + 1], k=k, by=by, exclude=exclude)
            expected = outcomes_from_ranked(top.labels, top.scores, [truth[q]], k=k)[0]
            assert outcomes[q, position] == expected, (q, k)


def test_pool_threshold_outcomes_sum_to_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(30), 2)
    pool = rng.normal(size=(60, 8))
    scored = ScorePool(
        pool[[0, 2, 4]] + rng.normal(0, 1.0, size=(3, 8)),
        truth=[0, 1, 2],
        sources=[0, 2, 4],
        pool=pool,
        pool_labels=labels,
        pool_image_ids=np.arange(60),
    )
    results = scored.draw(n=10, ks=[1, 5], trials=4, rng=rng, threshold=0.3)
    for result in results:
        for position in range(2):
            r = rates(result.outcomes[:, position])
            assert r.tpr + r.fpr + r.no_match == pytest.approx(1)
    everything_below = scored.evaluate(scored.distractor_columns(), ks=[5], threshold=1.01)[0]
    assert (everything_below == NO_MATCH).all()


def test_table_ii_shares_of_false_positive_classes():
    # non-unique: false positives whose class another false positive shares; recurring: the
    # most frequent class.
    assert (non_unique_share([5, 5, 5, 7, 8]), recurring_share([5, 5, 5, 7, 8])) == (0.6, 0.6)
    assert (non_unique_share([5, 5, 7, 7, 8]), recurring_share([5, 5, 7, 7, 8])) == (0.8, 0.4)
    assert non_unique_share([5, 7, 8]) == 0.0
    assert math.isnan(non_unique_share([]))
    assert math.isnan(recurring_share([]))


def test_table_ii_non_unique_reading_on_a_hand_computed_engine_answer(tmp_path):
    """Engine answers (top-3, similarity 0–100, threshold 80) for two methods, by hand:

    eigenfaces, truths 1–7: top-1 classes 10, 10, 11, (4's own photo second: TP), 12,
    (nothing ≥ 80: no match), 11 -> false-positive classes [10, 10, 11, 12, 11]: four of
    the five share their class with another false positive (non-unique 4/5 = 80%); the most
    frequent class (10 or 11) holds 2/5 = 40%.
    nbnet, truths 1–3: classes 10, 13, 14 -> no class repeats within nbnet (non-unique 0%,
    although class 10 is also eigenfaces'), the most frequent holds 1/3.
    """
    from reconstruction.metric1.report import write_markdown
    from reconstruction.metric1.scoring import ranked_trial

    labels = np.array(
        [
            [10, 20, 21],
            [10, 22, 23],
            [11, 24, 25],
            [11, 4, 26],
            [12, 27, 28],
            [13, 29, 30],
            [11, 31, 32],
            [10, 33, 34],
            [13, 35, 36],
            [14, 37, 38],
        ]
    )
    scores = np.full(labels.shape, 90.0)
    scores[5] = 70.0  # below the threshold: not returned
    truth = [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    group = np.array(["eigenfaces"] * 7 + ["nbnet"] * 3, dtype=object)
    trial = ranked_trial(labels, scores, truth, n=5000, ks=(3,), threshold=80.0)
    rows = {row["group"]: row for row in summarize([trial], group=group)}
    eigenfaces, nbnet = rows["eigenfaces"], rows["nbnet"]
    assert (eigenfaces["tpr"], eigenfaces["fpr"], eigenfaces["no_match"]) == pytest.approx(
        (1 / 7, 5 / 7, 1 / 7)
    )
    assert eigenfaces["fp_non_unique_share"] == pytest.approx(0.8)
    assert eigenfaces["fp_recurring_share"] == pytest.approx(0.4)
    assert nbnet["fp_non_unique_share"] == 0.0
    assert nbnet["fp_recurring_share"] == pytest.approx(1 / 3)
    table = write_markdown(
        list(rows.values()), tmp_path / "t.md", title="T", reference=(5000, 3)
    ).read_text()
    assert "Table II: non-unique false positives (same class)" in table
    assert "| eigenfaces | 80.0 | 40.0 | 71.4 |" in table
    assert "| nbnet | 0.0 | 33.3 | 100.0 |" in table


def test_summary_reports_table_ii_over_false_positives_only():
    from reconstruction.metric1.scoring import TrialResult

    outcomes = np.array([[FP], [FP], [FP], [TP]], dtype=np.int8)
    result = TrialResult(n=10, trial=0, ks=(5,), outcomes=outcomes, top1=np.array([7, 7, 9, 1]))
    (row,) = summarize([result])
    assert row["tpr"] == 0.25
    assert row["fpr"] == 0.75
    assert row["fp_recurring_share"] == pytest.approx(2 / 3)  # the TP's top-1 is ignored
    assert row["fp_non_unique_share"] == pytest.approx(2 / 3)


def test_intervals():
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0
    assert percentile_interval([0.1, 0.2, 0.3], level=1.0) == (0.1, 0.3)
