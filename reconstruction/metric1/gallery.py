"""Galleries of enrolled face embeddings and exact cosine top-K search (Metric 1's engine).

A `Gallery` holds an L2-normalised float32 matrix (N, D) with an identity label and an image
id per row. `Gallery.search` returns, for each query, the K best rows by cosine similarity:

- exact: every row is scored (matrix product), nothing is approximated;
- deterministic: rows are ranked by score descending, then by gallery row ascending, whatever
  the chunking, thread count or backend;
- per-query exclusions: each query may exclude gallery image ids (its own source photo,
  as Metric 1 requires), so the top-K is taken over the remaining rows;
- image- or identity-level: ``by="image"`` ranks rows; ``by="identity"`` ranks identities by
  their best non-excluded row (the first occurrence of each identity in the image ranking),
  so a query's top-K holds K distinct identities. Metric 1's "top-K contains ≥ 1 image of
  the true identity" is the same at both levels when every identity has one gallery image;
  with several images per identity, ``by="identity"`` gives each identity one slot.

Backends (``backend="auto"``, the default, picks ``faiss`` when ``faiss-cpu`` is installed,
else ``torch``; both return identical rows):

- ``faiss``: ``faiss.knn`` with inner product (the exhaustive search behind IndexFlatIP),
  searched one row deeper than needed and re-sorted to the order above. Which of several
  rows tied at faiss's cut it keeps depends on its heap order, so a query with a tie at the
  cut is re-ranked by the torch path. On 2 idle cores it is ~1.6× faster than the torch path
  (faiss's bundled OpenBLAS beats torch's MKL on this AMD CPU; benchmarks/topk_search.py).
- ``torch`` (no extra dependency): queries are multiplied with chunks of the gallery (score
  blocks of ≤ 64 MB, so a 1,000,000 × 512 gallery needs its 2 GB plus ~130 MB), each chunk
  keeps its top K+1 with ``torch.topk``; a chunk whose K-th and (K+1)-th scores tie is
  re-ranked exactly, so ties at the cut go to the lowest row.

Scores of the two backends may differ in the last float32 bits (their BLAS libraries sum in
different orders), which can swap two rows whose scores differ by ~1e-7.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from reconstruction.models import FaceDataset

__all__ = [
    "BACKENDS",
    "Gallery",
    "TopK",
    "faiss_available",
    "gallery_from_embeddings",
    "stored_vectors",
]

BACKENDS = ("torch", "faiss")
SCORE_BLOCK_BYTES = 64 * 2**20  # one (queries × gallery chunk) float32 score block
QUERY_BATCH = 1024  # queries scored together (larger batches reuse each gallery chunk more)
IDENTITY_DEPTH = 4  # first search depth per K for identity-level ranking, doubled on demand

Backend = Literal["auto", "torch", "faiss"]
Ranking = Literal["image", "identity"]


def faiss_available() -> bool:
    """Whether the optional ``faiss-cpu`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class TopK:
    """Search results, one row per query, best first; padded with -1 / -inf when fewer exist."""

    scores: np.ndarray  # (Q, K) float32 cosine similarity
    indices: np.ndarray  # (Q, K) int64 gallery rows
    labels: np.ndarray  # (Q, K) int64 identity labels of those rows
    image_ids: np.ndarray  # (Q, K) int64 image ids of those rows

    def hits(self, truth: Sequence[int] | np.ndarray) -> np.ndarray:
        """(Q, K) bool: whether each result carries the query's true label."""
        return self.labels == np.asarray(truth, dtype=np.int64)[:, None]


def _normalized(vectors: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Float32 C-contiguous rows of unit norm; the input is reused when already unit-norm."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a (N, D) matrix, got shape {matrix.shape}")
    unit = all(
        np.allclose(np.einsum("ij,ij->i", block, block), 1.0, atol=1e-4)
        for block in (matrix[s : s + chunk] for s in range(0, len(matrix), chunk))
    )
    if unit:
        return matrix
    out = np.empty_like(matrix)
    for start in range(0, len(matrix), chunk):
        block = matrix[start : start + chunk]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + chunk] = block / np.maximum(norms, 1e-12)
    return out


def _rank_rows(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row's candidates by (score desc, index asc), keep k; -inf ones become -1."""
    order = np.lexsort((indices, -scores), axis=-1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    indices = np.where(np.isneginf(scores), -1, indices)
    return scores, indices


class Gallery:
    """Enrolled embeddings (L2-normalised float32 rows) with identity labels and image ids."""

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray,
        image_ids: Sequence[int] | np.ndarray | None = None,
        backend: Backend = "auto",
        description: dict | None = None,
    ) -> None:
        self.vectors = _normalized(vectors)  # (N, D)
        count = len(self.vectors)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_ids = (
            np.arange(count, dtype=np.int64)
            if image_ids is None
            else np.asarray(image_ids, dtype=np.int64)
        )
        if self.labels.shape != (count,) or self.image_ids.shape != (count,):
            raise ValueError("labels and image_ids need one entry per gallery row")
        self._id_order = np.argsort(self.image_ids, kind="stable")
        if count and (np.diff(self.image_ids[self._id_order]) == 0).any():
            raise ValueError("gallery image ids must be unique")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if backend == "faiss" and not faiss_available():
            raise ValueError("backend 'faiss' needs the faiss-cpu package")
        self.backend = backend
        self.description = description or {}
        self._tensor = torch.from_numpy(self.vectors)  # shares memory
        self._max_per_label = int(np.unique(self.labels, return_counts=True)[1].max(initial=0))

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def rows_of(self, image_ids: Iterable[int]) -> np.ndarray:
        """Gallery rows of the given image ids (ids not enrolled are left out)."""
        wanted = np.fromiter(image_ids, dtype=np.int64)
        if not len(self) or not len(wanted):
            return np.empty(0, dtype=np.int64)
        sorted_ids = self.image_ids[self._id_order]
        position = np.searchsorted(sorted_ids, wanted).clip(max=len(self) - 1)
        found = sorted_ids[position] == wanted
        return self._id_order[position[found]]

    def search(
        self,
        queries: np.ndarray,
        *,
        k: int,
        by: Ranking = "image",
        exclude: Sequence[Iterable[int]] | None = None,
    ) -> TopK:
        """Exact cosine top-``k`` of each query (rows are L2-normalised here).

        ``exclude[i]`` lists gallery image ids that query ``i`` must not match (e.g. its own
        source photo). ``by="identity"`` returns the best row of each of the top-``k``
        distinct identities.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        if by not in ("image", "identity"):
            raise ValueError("by must be 'image' or 'identity'")
        queries = _normalized(np.atleast_2d(queries))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dims, the gallery {self.dim}")
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError("exclude needs one entry (possibly empty) per query")
        excluded = [
            self.rows_of(ids) for ids in (exclude if exclude is not None else [()] * len(queries))
        ]
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        indices = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(queries) if len(self) else 0, QUERY_BATCH):
            stop = start + QUERY_BATCH
            batch, rows = queries[start:stop], excluded[start:stop]
            if by == "image":
                s, i = self._search_rows(batch, min(k, len(self)), rows)
            else:
                s, i = self._search_identities(batch, k, rows)
            scores[start:stop, : s.shape[1]] = s
            indices[start:stop, : i.shape[1]] = i
        found = indices >= 0
        safe = np.where(found, indices, 0)
        return TopK(
            scores=scores,
            indices=indices,
            labels=np.where(found, self.labels[safe], -1) if len(self) else indices.copy(),
            image_ids=np.where(found, self.image_ids[safe], -1) if len(self) else indices.copy(),
        )

    def _search_identities(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k distinct labels per query: deepen the row search until each has k (or all)."""
        most_excluded = max((len(r) for r in excluded), default=0)
        depth = min(len(self), k * min(self._max_per_label, IDENTITY_DEPTH) + most_excluded)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        indices = np.full((len(queries), k), -1, dtype=np.int64)
        pending = np.arange(len(queries))
        while len(pending):
            s, i = self._search_rows(queries[pending], depth, [excluded[p] for p in pending])
            s, i, complete = _first_per_label(s, i, self.labels, k)
            done = complete | (depth >= len(self))
            scores[pending[done]], indices[pending[done]] = s[done], i[done]
            pending = pending[~done]
            depth = min(len(self), depth * 2)
        return scores, indices

    def _search_rows(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "faiss":
            return self._search_faiss(queries, k, excluded)
        return self._search_torch(queries, k, excluded)

    def _search_torch(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chunked matrix product + top-(k+1) per chunk, exact at ties; (Q, k) rows."""
        count = len(self)
        chunk = max(k + 1, 1024, SCORE_BLOCK_BYTES // (4 * max(1, len(queries))))
        query_rows = np.repeat(np.arange(len(queries)), [len(r) for r in excluded])
        excluded_rows = np.concatenate([*excluded, np.empty(0, dtype=np.int64)])
        q = torch.from_numpy(np.ascontiguousarray(queries))
        kept_scores, kept_rows = [], []
        with torch.inference_mode():
            for start in range(0, count, chunk):
                block = q @ self._tensor[start : start + chunk].T  # (Q, C)
                inside = (excluded_rows >= start) & (excluded_rows < start + chunk)
                if inside.any():
                    block[query_rows[inside], excluded_rows[inside] - start] = -torch.inf
                width = block.shape[1]
                values, positions = torch.topk(block, min(k + 1, width), dim=1)
                values, positions = values.numpy(), positions.numpy()
                if width > k:
                    # The cut must go to the lowest rows when the k-th and (k+1)-th scores tie.
                    for row in np.flatnonzero(values[:, k] == values[:, k - 1]):
                        scores_row = block[row].numpy()
                        tied = np.flatnonzero(scores_row >= values[row, k - 1])
                        best = tied[np.lexsort((tied, -scores_row[tied]))[:k]]
                        values[row, :k], positions[row, :k] = scores_row[best], best
                kept_scores.append(values[:, :k])
                kept_rows.append(positions[:, :k].astype(np.int64) + start)
        return _rank_rows(np.concatenate(kept_scores, 1), np.concatenate(kept_rows, 1), k)

    def _search_faiss(
        self, queries: np.ndarray, k: int, excluded: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """faiss.knn (IndexFlatIP's exhaustive search) one row deeper than needed, re-sorted.

        faiss's choice among rows tied at its cut depends on its heap order, so a query
        whose k-th score equals the deepest score returned is re-ranked by the torch path.
        """
        import faiss

        most_excluded = max((len(r) for r in excluded), default=0)
        depth = min(len(self), k + most_excluded + 1)
        scores, rows = faiss.knn(
            np.ascontiguousarray(queries), self.vectors, depth, metric=faiss.METRIC_INNER_PRODUCT
        )
        deepest = scores[:, -1].copy()
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        if most_excluded:
            padded = np.full((len(queries), most_excluded), -2, dtype=np.int64)
            for position, r in enumerate(excluded):
                padded[position, : len(r)] = r
            drop = (rows[:, :, None] == padded[:, None, :]).any(axis=2)
            scores = np.where(drop, -np.inf, scores)
        scores, rows = _rank_rows(scores, rows.astype(np.int64), k)
        if depth < len(self):
            ambiguous = np.flatnonzero(scores[:, -1] == deepest)
            if len(ambiguous):
                exact = self._search_torch(queries[ambiguous], k, [excluded[a] for a in ambiguous])
                scores[ambiguous], rows[ambiguous] = exact
        return scores, rows


def _first_per_label(
    scores: np.ndarray, rows: np.ndarray, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each label's first (best) row in each ranked row list, up to k labels.

    Returns (Q, k) scores and rows (padded) and, per query, whether k labels were found.
    """
    valid = rows >= 0
    codes = np.where(valid, labels[np.where(valid, rows, 0)], np.iinfo(np.int64).min)
    order = np.argsort(codes, axis=1, kind="stable")
    ordered = np.take_along_axis(codes, order, axis=1)
    first_sorted = np.ones_like(ordered, dtype=bool)
    first_sorted[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.zeros_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    first &= valid
    keep = first & (np.cumsum(first, axis=1) <= k)
    front = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, front, axis=1)
    out_scores = np.where(kept, np.take_along_axis(scores, front, axis=1), -np.inf)
    out_rows = np.where(kept, np.take_along_axis(rows, front, axis=1), -1)
    if out_scores.shape[1] < k:
        pad = k - out_scores.shape[1]
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_rows = np.pad(out_rows, ((0, 0), (0, pad)), constant_values=-1)
    return out_scores.astype(np.float32), out_rows, keep.sum(axis=1) >= k


def gallery_from_embeddings(
    *,
    dataset: FaceDataset | str,
    recognizer: str,
    weights_sha256: str | None = None,
    split: str | None = None,
    identities: int | None = None,
    seed: int = 0,
    per_identity: int | None = None,
    backend: Backend = "auto",
) -> Gallery:
    """A gallery from stored Embeddings of a dataset's ok images.

    ``identities``: enrol that many identities drawn with ``seed`` (all when None);
    ``per_identity``: each identity's first n images by path (all when None). Labels are
    Identity ids, image ids FaceImage ids. Missing or stale embeddings raise ValueError.
    """
    from reconstruction.models import FaceDataset, FaceImage
    from reconstruction.recognizers.registry import get_recognizer

    if isinstance(dataset, str):
        dataset = FaceDataset.objects.get(name=dataset)
    if weights_sha256 is None:
        weights_sha256 = get_recognizer(recognizer).weights_sha256
    images = FaceImage.objects.ok().filter(dataset=dataset)
    if split is not None:
        images = images.filter(identity__split=split)
    rows = list(images.order_by("identity_id", "relative_path").values_list("id", "identity_id"))
    by_identity: dict[int, list[int]] = {}
    for image_id, identity_id in rows:
        by_identity.setdefault(identity_id, []).append(image_id)
    chosen = sorted(by_identity)
    if identities is not None:
        if identities > len(chosen):
            raise ValueError(f"asked for {identities} identities, {len(chosen)} available")
        picked = np.random.default_rng(seed).choice(len(chosen), size=identities, replace=False)
        chosen = [chosen[i] for i in sorted(picked)]
    image_ids = [i for identity in chosen for i in by_identity[identity][:per_identity]]
    labels = [identity for identity in chosen for _ in by_identity[identity][:per_identity]]
    vectors, found = _stored_vectors(image_ids, recognizer=recognizer, weights=weights_sha256)
    missing = len(image_ids) - found
    if missing:
        raise ValueError(
            f"{missing} of {len(image_ids)} images lack a current {recognizer} embedding "
            f"(missing or stale): run `manage.py embed {dataset.name} --recognizer {recognizer}`"
        )
    return Gallery(
        vectors,
        labels=labels,
        image_ids=image_ids,
        backend=backend,
        description={
            "dataset": dataset.name,
            "fingerprint": dataset.fingerprint,
            "recognizer": recognizer,
            "weights_sha256": weights_sha256,
            "split": split,
            "identities": len(chosen),
            "seed": seed,
            "per_identity": per_identity,
        },
    )


def stored_vectors(image_ids: Sequence[int], *, recognizer: str, weights_sha256: str) -> np.ndarray:
    """(len(image_ids), D) current vectors in the given order; ValueError if any is missing."""
    vectors, found = _stored_vectors(image_ids, recognizer=recognizer, weights=weights_sha256)
    if found != len(image_ids):
        raise ValueError(
            f"{len(image_ids) - found} of {len(image_ids)} images lack a current "
            f"{recognizer} embedding (missing or stale)"
        )
    return vectors


def _stored_vectors(
    image_ids: Sequence[int], *, recognizer: str, weights: str, chunk: int = 2000
) -> tuple[np.ndarray, int]:
    """Fill a (N, D) float32 matrix from non-stale Embedding rows; return it and rows found."""
    from django.db.models import F

    from reconstruction.models import Embedding

    position = {image_id: i for i, image_id in enumerate(image_ids)}
    matrix: np.ndarray | None = None
    found = 0
    for start in range(0, len(image_ids), chunk):
        part = image_ids[start : start + chunk]
        rows = Embedding.objects.filter(
            image_id__in=part,
            recognizer=recognizer,
            weights_sha256=weights,
            source_sha256=F("image__sha256"),
        ).values_list("image_id", "dim", "vector")
        for image_id, dim, vector in rows:
            if matrix is None:
                matrix = np.zeros((len(image_ids), dim), dtype=np.float32)
            matrix[position[image_id]] = np.frombuffer(vector, dtype="<f4")
            found += 1
    if matrix is None:
        matrix = np.zeros((len(image_ids), 1), dtype=np.float32)
    return matrix, found
