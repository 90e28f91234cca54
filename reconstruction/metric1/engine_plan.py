"""What a Metric 1 run in a commercial engine will enrol and send, before anything is sent.

`topk_engine_plan` draws the one gallery and the queries of `engine_runs.topk_evaluate_engine`
(and of ``evaluate_topk --engine … --dry-run``); database and file reads only.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruction.metric1.engines import PAPER_ENGINE_K, PAPER_ENGINE_N
from reconstruction.metric1.selection import pool_rows, reconstructions_chosen
from reconstruction.models import FaceDataset, Identity, Reconstruction

if TYPE_CHECKING:
    from reconstruction.metric1.engines import CallPlan

__all__ = ["EnginePlan", "EngineQuery", "topk_engine_plan"]

PoolRow = tuple[int, int, str, str]  # (image id, identity id, relative path, sha256)


@dataclass(frozen=True)
class EngineQuery:
    """One query for an engine: the reconstruction's image, or a photo (the baselines)."""

    group: str
    truth: int  # identity id
    source: int  # FaceImage id left out of the gallery in the "excluded" variant
    reconstruction: Reconstruction | None = None


@dataclass(frozen=True)
class EnginePlan:
    """What `topk_evaluate_engine` would enrol and send, before anything is sent."""

    engine: str
    collection: str
    region: str
    dataset: FaceDataset
    reconstructions: list[Reconstruction]
    queries: list[EngineQuery]
    gallery: list[PoolRow]
    names: dict[int, str]  # identity id → name
    distractors: list[int]  # identity ids of the N − 1 drawn distractors
    max_faces: int
    calls: CallPlan
    drop_other_targets: bool = False

    def describe(self) -> str:
        """What the plan enrols and sends, and what it would cost, for a dry run."""
        groups = ", ".join(f"{g} {c}" for g, c in Counter(q.group for q in self.queries).items())
        return "\n".join(
            [
                f"Engine {self.engine}, collection {self.collection}"
                + (f" ({self.region})" if self.region else ""),
                f"Gallery: {len(self.distractors) + len({q.truth for q in self.queries})} "
                f"identities ({len(self.distractors)} drawn distractors + the true ones), "
                f"{len(self.gallery)} photos",
                f"Queries: {len(self.queries)} ({groups}), each searched once with "
                f"MaxFaces = {self.max_faces}",
                "Other queries' true identities: "
                + (
                    "dropped from each answer (each query ranked against N identities)"
                    if self.drop_other_targets
                    else "kept in each answer, as in the paper's single enrolled database"
                ),
                self.calls.describe(),
            ]
        )


@dataclass(frozen=True)
class _Pool:
    """The dataset's pooled photos (`selection.pool_rows`) and their ids and identities."""

    rows: list[PoolRow]
    ids: Any  # (P,) FaceImage ids
    labels: Any  # (P,) identity ids
    position: dict[int, int]  # FaceImage id → pool row


def _pool_load(source: FaceDataset) -> _Pool:
    """The dataset's ok target- and gallery-split photos with their paths and digests."""
    import numpy as np

    rows = pool_rows(source, "id", "identity_id", "relative_path", "sha256")
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    labels = np.array([r[1] for r in rows], dtype=np.int64)
    return _Pool(rows, ids, labels, {int(i): p for p, i in enumerate(ids)})


def _engine_queries(
    rows: list[Reconstruction],
    *,
    pool_ids: Any,
    pool_labels: Any,
    seed: int,
    baselines: bool,
) -> list[EngineQuery]:
    """Reconstructions, then the photo and random-face baselines drawn as `topk_evaluate` does."""
    import numpy as np

    queries = [EngineQuery(r.method, r.target.identity_id, r.target_id, r) for r in rows]
    if baselines:
        targets = list(dict.fromkeys(r.target_id for r in rows))
        target_identity = {r.target_id: r.target.identity_id for r in rows}
        queries += [EngineQuery("photo", target_identity[t], t) for t in targets]
        rng = np.random.default_rng([seed, 1])
        others = np.flatnonzero(~np.isin(pool_labels, list({q.truth for q in queries})))
        picked = rng.choice(others, size=len(targets), replace=len(others) < len(targets))
        queries += [
            EngineQuery("random", target_identity[t], int(pool_ids[p]))
            for t, p in zip(targets, picked, strict=True)
        ]
    return queries


def _gallery_draw(
    pool: _Pool, queries: list[EngineQuery], *, n: int, seed: int
) -> tuple[list[PoolRow], Any]:
    """The gallery's photos (every true identity's and the drawn distractors') and the
    N − 1 distractors, `topk_evaluate`'s first draw with the same ``seed``."""
    from reconstruction.metric1 import scoring

    true_ids = {q.truth for q in queries}
    distractors = scoring.distractor_draw(pool.labels, sorted(true_ids), n=n, seed=seed)
    enrolled = true_ids | set(distractors.tolist())
    return [r for r in pool.rows if r[1] in enrolled], distractors


def _gallery_check(
    pool: _Pool, gallery: list[PoolRow], queries: list[EngineQuery], *, source: FaceDataset
) -> None:
    """Refuse a gallery that leaves a true identity without a photo once the source photo is
    left out, or whose photos (or the photo queries') are missing on disk."""
    photos_of = Counter(g[1] for g in gallery)
    identity_of_image = {int(i): int(label) for i, label in zip(pool.ids, pool.labels, strict=True)}
    lacking = sorted(
        {
            q.truth
            for q in queries
            if photos_of[q.truth] - (identity_of_image[q.source] == q.truth) < 1
        }
    )
    if lacking:
        raise ValueError(
            f"true identities without a gallery image once the source photo is left out: {lacking}"
        )
    root = Path(source.root)
    missing = [g[2] for g in gallery if not (root / g[2]).is_file()]
    missing += [
        path
        for q in queries
        if q.reconstruction is None
        for path in [pool.rows[pool.position[q.source]][2]]
        if not (root / path).is_file()
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} photos of {source.name!r} are missing under {root} (e.g. "
            f"{missing[0]}): the engine is sent the original photos; restore them or re-run "
            "import_faces."
        )


def _collection_name(source: FaceDataset, gallery: list[PoolRow], *, n: int, seed: int) -> str:
    """A collection named by the dataset, N, the seed and a digest of the gallery's photos."""
    digest = hashlib.sha256(
        f"{source.fingerprint}:{sorted(g[0] for g in gallery)}".encode()
    ).hexdigest()[:10]
    return f"fvr-{source.name}-n{n}-s{seed}-{digest}"


def _max_faces(
    engine_max: int,
    gallery: list[PoolRow],
    queries: list[EngineQuery],
    *,
    ks: tuple[int, ...],
    drop: bool,
) -> int:
    """Faces an engine returns per search: max K plus those an answer may lose, the source
    photo and, with ``drop`` (drop_other_targets), every photo of a true identity."""
    true_ids = {q.truth for q in queries}
    droppable = sum(1 for g in gallery if g[1] in true_ids) if drop else 1
    return min(engine_max, max(ks) + droppable)


def topk_engine_plan(
    *,
    dataset: str,
    engine: str,
    collection: str | None = None,
    region: str | None = None,
    methods: list[str] | None = None,
    reconstructions_of: str | None = None,
    ks: tuple[int, ...] = (PAPER_ENGINE_K,),
    n: int = PAPER_ENGINE_N,
    seed: int = 0,
    baselines: bool = True,
    drop_other_targets: bool = False,
) -> EnginePlan:
    """The gallery, queries and API calls of a Metric 1 run in a commercial engine (no request).

    The gallery is one draw: the N − 1 distractors of `topk_evaluate`'s first draw with the
    same ``seed`` (`metric1.distractor_draw`) plus every query's true identity, each with all
    its ok photos — one enrolled database, as in the paper (N = 5000 identities, "the
    identities associated with all reconstructions we test are also enrolled"). Every
    enrolled identity may answer a query, the other targets' identities included; with
    ``drop_other_targets`` those are dropped from each answer, so each query is ranked
    against exactly N identities, as in the local path. In the excluded variant the query's
    source photo is dropped. The engine returns max K plus as many faces as may be dropped
    (``max_faces``).
    """
    from reconstruction.metric1.engines import get_engine

    source = FaceDataset.objects.get(name=dataset)
    pool = _pool_load(source)
    rows = reconstructions_chosen(
        source=source,
        methods=methods,
        reconstructions_of=reconstructions_of,
        position=pool.position,
    )
    queries = _engine_queries(
        rows, pool_ids=pool.ids, pool_labels=pool.labels, seed=seed, baselines=baselines
    )
    gallery, distractors = _gallery_draw(pool, queries, n=n, seed=seed)
    _gallery_check(pool, gallery, queries, source=source)
    enrolled = {q.truth for q in queries} | set(distractors.tolist())
    if collection is None:
        collection = _collection_name(source, gallery, n=n, seed=seed)
    adapter = get_engine(engine, collection_id=collection, region=region)
    return EnginePlan(
        engine=engine,
        collection=collection,
        region=region or "",
        dataset=source,
        reconstructions=rows,
        queries=queries,
        gallery=gallery,
        names=dict(Identity.objects.filter(pk__in=enrolled).values_list("pk", "name")),
        distractors=sorted(int(d) for d in distractors),
        max_faces=_max_faces(adapter.max_k, gallery, queries, ks=ks, drop=drop_other_targets),
        calls=adapter.plan(gallery=len(gallery), queries=len(queries)),
        drop_other_targets=drop_other_targets,
    )
