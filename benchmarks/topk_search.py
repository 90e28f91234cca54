"""Exact cosine top-K: `Gallery.search` against faiss IndexFlatIP in the same run.

Usage: ``python -m benchmarks.topk_search`` (options: ``--sizes``, ``--queries``, ``--k``,
``--dim``, ``--repeats``, ``--threads``).

Random unit vectors (seeded, 512-D), 256 queries, K = 25, at N = 10⁴, 10⁵, 10⁶. For each N
the engines run interleaved (one warm-up, then ``--repeats`` rounds; the best round is
reported, as the machine is shared): faiss IndexFlatIP (the reference), `Gallery` with the
faiss backend (its default when faiss-cpu is installed) and with the torch backend (the
fallback without faiss). Peak memory is the largest
resident-set growth sampled (every 2 ms) while a search runs, above the resident set before
it; the gallery itself (N × D × 4 bytes) and faiss's copy of it are listed separately.
The last column compares each engine with `Gallery` (torch): the same rows per query, the
same order, and the largest score difference. Scores of different BLAS libraries differ in
the last float32 bits, which can swap two rows whose scores differ by ~1e-7.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from reconstruction.metric1.gallery import Gallery, TopK, faiss_available

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """The resident set size of this process now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def unit_vectors(count: int, dim: int, seed: int, chunk: int = 65536) -> np.ndarray:
    """(count, dim) float32 random unit vectors, generated in place chunk by chunk."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, chunk):
        block = rng.standard_normal((min(chunk, count - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + chunk] = block
    return out


def measured(call: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, int]:
    """Run ``call``; return its result, seconds and peak resident growth (bytes)."""
    before = rss_bytes()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return result, seconds, max(peak[0], rss_bytes()) - before


def run_size(count: int, args: argparse.Namespace) -> None:
    """Benchmark one gallery size and print one line per engine."""
    import faiss

    vectors = unit_vectors(count, args.dim, seed=count)
    queries = unit_vectors(args.queries, args.dim, seed=1)
    labels = np.arange(count)
    gallery = Gallery(vectors, labels=labels, backend="torch")
    faiss_gallery = Gallery(vectors, labels=labels, backend="faiss")
    index = faiss.IndexFlatIP(args.dim)
    index.add(vectors)

    engines: dict[str, Callable[[], Result]] = {
        "faiss IndexFlatIP": lambda: index.search(queries, args.k),
        "Gallery faiss": lambda: as_result(faiss_gallery.search(queries, k=args.k)),
        "Gallery torch": lambda: as_result(gallery.search(queries, k=args.k)),
    }
    for call in engines.values():  # warm-up: thread pools, page faults
        call()
    best = dict.fromkeys(engines, float("inf"))
    peaks = dict.fromkeys(engines, 0)
    results: dict[str, Result] = {}
    for _ in range(args.repeats):
        for name, call in engines.items():
            results[name], seconds, peak = measured(call)
            best[name] = min(best[name], seconds)
            peaks[name] = max(peaks[name], peak)

    reference = results["Gallery torch"]
    faiss_qps = args.queries / best["faiss IndexFlatIP"]
    print(
        f"N = {count:>9,}  gallery {vectors.nbytes / 2**20:,.0f} MiB "
        f"(+ {vectors.nbytes / 2**20:,.0f} MiB in the faiss index)"
    )
    for name in engines:
        qps = args.queries / best[name]
        print(
            f"  {name:<18} {best[name]:7.3f} s  {qps:8.1f} q/s  "
            f"{qps / faiss_qps:5.2f}× faiss  peak +{peaks[name] / 2**20:7.1f} MiB  "
            f"{comparison(results[name], reference)}"
        )


Result = tuple[np.ndarray, np.ndarray]  # (Q, K) scores, (Q, K) rows


def as_result(top: TopK) -> Result:
    return top.scores, top.indices


def comparison(result: Result, reference: Result, tolerance: float = 1e-5) -> str:
    """How a result compares with the reference: same rows, same order, scores within tol."""
    scores, rows = result
    ref_scores, ref_rows = reference
    same_sets = np.array_equal(np.sort(rows, 1), np.sort(ref_rows, 1))
    if not same_sets:
        differing = int((np.sort(rows, 1) != np.sort(ref_rows, 1)).any(1).sum())
        return f"rows DIFFER in {differing} queries"
    by_row, ref_by_row = np.argsort(rows, 1), np.argsort(ref_rows, 1)
    gap = np.abs(
        np.take_along_axis(scores, by_row, 1) - np.take_along_axis(ref_scores, ref_by_row, 1)
    ).max()
    reordered = int((rows != ref_rows).any(1).sum())
    order = "same order" if not reordered else f"order differs in {reordered} queries"
    return f"same rows, {order}, max |Δscore| {gap:.1e}" + ("" if gap <= tolerance else " (!)")


def main() -> None:
    """Print queries/s and peak memory per engine and gallery size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10**4, 10**5, 10**6])
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not faiss_available():
        raise SystemExit("this benchmark compares with faiss: pip install faiss-cpu")
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"{args.queries} queries, K = {args.k}, {args.dim}-D; {args.threads} threads "
        f"(torch and faiss) on {os.cpu_count()} cores; load average {load}; "
        f"faiss {faiss.__version__}, torch {torch.__version__}"
    )
    for count in args.sizes:
        run_size(count, args)


if __name__ == "__main__":
    main()
