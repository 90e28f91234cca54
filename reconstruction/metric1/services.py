"""Metric 1: top-K evaluation runs over stored reconstructions and embeddings."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruction.faces import alignment
from reconstruction.metric1.engines import PAPER_ENGINE_K, PAPER_ENGINE_N
from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Identity,
    Reconstruction,
    Split,
)

if TYPE_CHECKING:
    from reconstruction.metric1.engines import CallPlan

logger = logging.getLogger(__name__)


# --- Metric 1: top-K matching ------------------------------------------------------------------


def _reconstruction_vectors(
    rows: list[Any], *, recognizer: str, device: str, cache_dir: Path | None
) -> Any:
    """F' vectors of stored reconstruction images as `reconstruction_view` shows them to F',
    cached by image name in an .npz file (named by the weights and the view)."""
    import numpy as np

    from reconstruction.recognizers.registry import (
        get_recognizer,
        reconstruction_embed,
        reconstruction_view_description,
    )

    engine = get_recognizer(recognizer)
    cache: dict[str, Any] = {}
    cache_file = None
    if cache_dir is not None:
        view = hashlib.sha256(reconstruction_view_description(recognizer).encode()).hexdigest()
        cache_file = Path(cache_dir) / f"{recognizer}-{engine.weights_sha256[:16]}-{view[:8]}.npz"
        if cache_file.exists():
            with np.load(cache_file) as stored:
                cache = {name: stored[name] for name in stored.files}
    missing = [row for row in rows if row.image.name not in cache]
    if missing:
        pixels = []
        for row in missing:
            with row.image.open("rb") as handle:
                pixels.append(alignment.decode_rgb(handle.read()))  # (112, 112, 3)
        vectors = reconstruction_embed(recognizer, np.stack(pixels), device=device)
        cache.update({row.image.name: v for row, v in zip(missing, vectors, strict=True)})
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache_file, **cache)
    return np.stack([cache[row.image.name] for row in rows]) if rows else None


def _json_safe(value: Any) -> Any:
    """NaN → None (PostgreSQL's jsonb has no NaN); numpy scalars → Python."""
    import math

    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _reconstructions_chosen(
    *,
    source: FaceDataset,
    methods: list[str] | None,
    reconstructions_of: str | None,
    position: dict[int, int],
) -> list[Reconstruction]:
    """The stored reconstructions to query, in a stable order: of the dataset's pooled images,
    optionally only some methods or one F."""
    rows = Reconstruction.objects.filter(target__dataset=source).select_related("target")
    if methods:
        rows = rows.filter(method__in=methods)
    if reconstructions_of:
        rows = rows.filter(recognizer=reconstructions_of)
    chosen = [
        r
        for r in rows.order_by("method", "recognizer", "target_id", "id")
        if r.target_id in position
    ]
    if not chosen:
        raise ValueError("no reconstructions of target- or gallery-split images match")
    return chosen


def topk_evaluate(
    *,
    dataset: str,
    recognizer: str,
    out_dir: Path,
    methods: list[str] | None = None,
    reconstructions_of: str | None = None,
    ks: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35, 40),
    ns: tuple[int, ...] = (50, 100, 500, 1000, 2500, 5000),
    k: int = 25,
    n: int = 1000,
    sweep: str = "both",
    trials: int = 10,
    seed: int = 0,
    include_source: bool = False,
    threshold: float | None = None,
    by: str = "image",
    baselines: bool = True,
    cache_dir: Path | None = None,
    device: str = "cpu",
) -> Any:
    """Metric 1 for stored reconstructions in F' = ``recognizer``; files + a TopKRun.

    The gallery pool is every ok target- and gallery-split image of ``dataset`` (train
    identities never enrol); each trial enrols N − 1 random distractor identities plus the
    query's true identity. Baselines: the original photo of each target ("photo") and a
    random other face of the pool ("random"). Reconstruction images are embedded in F' as
    `reconstruction.recognizers.registry.reconstruction_view` shows them (dlib-resnet: a dlib chip,
    like its gallery) and cached in ``cache_dir``; gallery vectors are the stored Embedding
    rows.
    """
    import numpy as np

    from reconstruction.metric1 import scoring as metric1
    from reconstruction.metric1.gallery import stored_vectors
    from reconstruction.models import TopKRun
    from reconstruction.recognizers.registry import get_recognizer, reconstruction_view_description

    started = time.perf_counter()
    source = FaceDataset.objects.get(name=dataset)
    engine = get_recognizer(recognizer)
    pool_rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split__in=[Split.TARGET, Split.GALLERY])
        .order_by("identity_id", "relative_path")
        .values_list("id", "identity_id")
    )
    if not pool_rows:
        raise ValueError(f"dataset {dataset!r} has no target or gallery images")
    pool_ids = np.array([r[0] for r in pool_rows], dtype=np.int64)
    pool_labels = np.array([r[1] for r in pool_rows], dtype=np.int64)
    pool = stored_vectors(
        pool_ids.tolist(), recognizer=recognizer, weights_sha256=engine.weights_sha256
    )
    position = {int(i): p for p, i in enumerate(pool_ids)}

    rows = _reconstructions_chosen(
        source=source, methods=methods, reconstructions_of=reconstructions_of, position=position
    )
    several_f = len({r.recognizer for r in rows}) > 1
    groups = [f"{r.method}/{r.recognizer}" if several_f else r.method for r in rows]
    vectors = [
        _reconstruction_vectors(rows, recognizer=recognizer, device=device, cache_dir=cache_dir)
    ]
    truth = [r.target.identity_id for r in rows]
    sources = [r.target_id for r in rows]
    if baselines:
        targets = list(dict.fromkeys(r.target_id for r in rows))
        target_identity = {r.target_id: r.target.identity_id for r in rows}
        vectors.append(pool[[position[t] for t in targets]])
        groups += ["photo"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += targets
        rng = np.random.default_rng([seed, 1])
        query_identities = set(truth)
        others = np.flatnonzero(~np.isin(pool_labels, list(query_identities)))
        picked = rng.choice(others, size=len(targets), replace=len(others) < len(targets))
        vectors.append(pool[picked])
        groups += ["random"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += pool_ids[picked].tolist()
    queries = np.concatenate(vectors)
    group = np.array(groups, dtype=object)

    variants = [("excluded", False)] + ([("included", True)] if include_source else [])
    out_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for variant_index, (variant, include) in enumerate(variants):
        scored = metric1.ScorePool(
            queries,
            truth=truth,
            sources=sources,
            pool=pool,
            pool_labels=pool_labels,
            pool_image_ids=pool_ids,
            include_source=include,
        )
        eligible = scored.distractor_columns()
        plan = []
        if sweep in ("k", "both"):
            plan.append(("k", n, tuple(ks)))
        if sweep in ("n", "both"):
            plan += [("n", size, (k,)) for size in ns]
        for axis, size, sweep_ks in plan:
            if size - 1 > len(eligible):
                if variant_index == 0:
                    notes.append(f"N = {size} skipped: only {len(eligible)} distractor identities")
                continue
            rng = np.random.default_rng([seed, size])  # same galleries for both variants
            results = scored.draw(
                n=size, ks=sweep_ks, trials=trials, rng=rng, threshold=threshold, by=by
            )
            for row in metric1.summarize(results, group=group):
                out_rows.append({"engine": recognizer, "variant": variant, "sweep": axis, **row})

    out_dir = Path(out_dir)
    stem = f"metric1_{recognizer}"
    metric1.write_csv(out_rows, out_dir / f"{stem}.csv")
    title = f"Metric 1: top-K matching in {recognizer} on {dataset}"
    notes = [
        f"{len(rows)} reconstructions ({', '.join(sorted({r.method for r in rows}))}), "
        f"pool {len(pool_ids)} images of {len(set(pool_labels.tolist()))} identities, "
        f"{trials} gallery draws per N, {by}-level top-K, threshold {threshold}",
        "intervals: 2.5–97.5 percentiles over gallery draws (Wilson for pooled in the CSV)",
        *notes,
    ]
    metric1.write_markdown(
        out_rows, out_dir / f"{stem}.md", title=title, notes=notes, reference=(n, k)
    )
    figures = metric1.write_plots(out_rows, out_dir, reference=(n, k), stem=stem)
    seconds = time.perf_counter() - started
    config = {
        "dataset": dataset,
        "recognizer": recognizer,
        "methods": methods or [],
        "reconstructions_of": reconstructions_of or "",
        "ks": list(ks),
        "ns": list(ns),
        "k": k,
        "n": n,
        "sweep": sweep,
        "trials": trials,
        "seed": seed,
        "include_source": include_source,
        "threshold": threshold,
        "by": by,
        "baselines": baselines,
        "reconstruction_view": reconstruction_view_description(recognizer),
        "dataset_fingerprint": source.fingerprint,
        "reconstruction_ids": [r.pk for r in rows],
    }
    return TopKRun.objects.create(
        dataset=source,
        recognizer=recognizer,
        recognizer_sha256=engine.weights_sha256,
        methods=sorted({r.method for r in rows}),
        reconstructions_of=reconstructions_of or "",
        gallery_n=n,
        k=k,
        ks=list(ks),
        ns=list(ns),
        sweep=sweep,
        trials=trials,
        seed=seed,
        include_source=include_source,
        threshold=threshold,
        ranking=by,
        config=config,
        results=_json_safe(
            {
                "rows": out_rows,
                "notes": notes,
                "files": [
                    str(p) for p in [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", *figures]
                ],
            }
        ),
        output_dir=str(out_dir),
        queries=len(queries),
        seconds=seconds,
    )


# --- Metric 1 through a commercial engine (evaluate_topk --engine) ---------------------------


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
    gallery: list[tuple[int, int, str, str]]  # (image id, identity id, relative path, sha256)
    names: dict[int, str]  # identity id → name
    distractors: list[int]  # identity ids of the N − 1 drawn distractors
    max_faces: int
    calls: CallPlan
    drop_other_targets: bool = False

    def describe(self) -> str:
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
    import numpy as np

    from reconstruction.metric1 import scoring as metric1
    from reconstruction.metric1.engines import get_engine

    source = FaceDataset.objects.get(name=dataset)
    pool_rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split__in=[Split.TARGET, Split.GALLERY])
        .order_by("identity_id", "relative_path")
        .values_list("id", "identity_id", "relative_path", "sha256")
    )
    if not pool_rows:
        raise ValueError(f"dataset {dataset!r} has no target or gallery images")
    pool_ids = np.array([r[0] for r in pool_rows], dtype=np.int64)
    pool_labels = np.array([r[1] for r in pool_rows], dtype=np.int64)
    position = {int(i): p for p, i in enumerate(pool_ids)}
    rows = _reconstructions_chosen(
        source=source, methods=methods, reconstructions_of=reconstructions_of, position=position
    )
    queries = _engine_queries(
        rows,
        pool_ids=pool_ids,
        pool_labels=pool_labels,
        seed=seed,
        baselines=baselines,
    )
    true_ids = {q.truth for q in queries}
    distractors = metric1.distractor_draw(pool_labels, sorted(true_ids), n=n, seed=seed)
    enrolled = true_ids | set(distractors.tolist())
    gallery = [r for r in pool_rows if r[1] in enrolled]
    photos_of = Counter(g[1] for g in gallery)
    identity_of_image = {int(i): int(label) for i, label in zip(pool_ids, pool_labels, strict=True)}
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
        for path in [pool_rows[position[q.source]][2]]
        if not (root / path).is_file()
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} photos of {dataset!r} are missing under {root} (e.g. {missing[0]}): "
            "the engine is sent the original photos; restore them or re-run import_faces."
        )
    names = dict(Identity.objects.filter(pk__in=enrolled).values_list("pk", "name"))
    max_k = max(ks)
    if collection is None:
        digest = hashlib.sha256(
            f"{source.fingerprint}:{sorted(g[0] for g in gallery)}".encode()
        ).hexdigest()[:10]
        collection = f"fvr-{dataset}-n{n}-s{seed}-{digest}"
    adapter = get_engine(engine, collection_id=collection, region=region)
    # The source photo, and with drop_other_targets every photo of a true identity.
    droppable = sum(1 for g in gallery if g[1] in true_ids) if drop_other_targets else 1
    max_faces = min(adapter.max_k, max_k + droppable)
    return EnginePlan(
        engine=engine,
        collection=collection,
        region=region or "",
        dataset=source,
        reconstructions=rows,
        queries=queries,
        gallery=gallery,
        names=names,
        distractors=sorted(int(d) for d in distractors),
        max_faces=max_faces,
        calls=adapter.plan(gallery=len(gallery), queries=len(queries)),
        drop_other_targets=drop_other_targets,
    )


def _photo_bytes(root: Path, relative_path: str, sha256: str) -> bytes:
    """A dataset photo's bytes, refused when it changed since `import_faces`."""
    data = (root / relative_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{root / relative_path} changed since import_faces: re-import it.")
    return data


def topk_evaluate_engine(
    *,
    dataset: str,
    engine: str,
    out_dir: Path,
    collection: str | None = None,
    region: str | None = None,
    methods: list[str] | None = None,
    reconstructions_of: str | None = None,
    ks: tuple[int, ...] = (PAPER_ENGINE_K,),
    k: int = PAPER_ENGINE_K,
    n: int = PAPER_ENGINE_N,
    seed: int = 0,
    include_source: bool = False,
    threshold: float | None = None,
    baselines: bool = True,
    drop_other_targets: bool = False,
) -> Any:
    """Metric 1 in a commercial engine (`reconstruction.metric1.engines`); files + a TopKRun.

    Defaults are the paper's: N = 5000, K = 5, the engine's own default threshold (None:
    the adapter's ``default_threshold``, Rekognition's 80), other targets' identities kept in
    each answer (``drop_other_targets`` removes them). One gallery (see `topk_engine_plan`)
    is enrolled (resumably: faces already in the collection are skipped) and each query is
    searched once; every K of ``ks`` is cut from that one ranking, for the excluded and
    (``include_source``) included variants alike. The threshold makes "no match" a third
    outcome (a query in which the engine finds no face counts as one). No N sweep: it would
    need one collection per draw.
    The collection is kept (a re-run skips enrolment); `rekognition_cleanup` deletes it.
    """
    import numpy as np

    from reconstruction.metric1 import scoring as metric1
    from reconstruction.metric1.engines import GalleryImage, SearchResult, get_engine, ranked_matrix
    from reconstruction.models import TopKRun

    started = time.perf_counter()
    plan = topk_engine_plan(
        dataset=dataset,
        engine=engine,
        collection=collection,
        region=region,
        methods=methods,
        reconstructions_of=reconstructions_of,
        ks=ks,
        n=n,
        seed=seed,
        baselines=baselines,
        drop_other_targets=drop_other_targets,
    )
    root = Path(plan.dataset.root)
    photo_of = {
        g[0]: g
        for g in FaceImage.objects.filter(
            pk__in=[q.source for q in plan.queries if q.reconstruction is None]
        ).values_list("id", "identity_id", "relative_path", "sha256")
    }
    adapter = get_engine(engine, collection_id=plan.collection, region=region)
    if threshold is None:
        threshold = adapter.default_threshold
    enrolment = adapter.enrol(
        (
            GalleryImage(plan.names[identity], str(image), _photo_bytes(root, path, sha))
            for image, identity, path, sha in plan.gallery
        ),
        strict=True,
    )
    answers = []
    for query in plan.queries:
        if query.reconstruction is not None:
            with query.reconstruction.image.open("rb") as handle:
                data = handle.read()
        else:
            _, _, path, sha = photo_of[query.source]
            data = _photo_bytes(root, path, sha)
        answers.append(adapter.search(data, k=plan.max_faces, threshold=threshold))

    identity_of_key = {str(image): identity for image, identity, _, _ in plan.gallery}
    true_ids = {q.truth for q in plan.queries}
    labels = {name: identity for identity, name in plan.names.items()}
    truth = [q.truth for q in plan.queries]
    group = np.array([q.group for q in plan.queries], dtype=object)
    max_k = max(ks)
    k_ref = k if k in ks else max_k
    variants = [("excluded", False)] + ([("included", True)] if include_source else [])
    out_rows: list[dict[str, Any]] = []
    for variant, include in variants:
        # Drop the source photo when excluded and, with drop_other_targets, other queries'
        # true identities (each query then ranked against its own N identities); cut at max K.
        answers_of_variant = [
            SearchResult(
                matches=tuple(
                    m
                    for m in answer.matches
                    if (
                        not drop_other_targets
                        or identity_of_key.get(m.key) == query.truth
                        or identity_of_key.get(m.key) not in true_ids
                    )
                    and (include or m.key != str(query.source))
                )[:max_k],
                no_face=answer.no_face,
            )
            for query, answer in zip(plan.queries, answers, strict=True)
        ]
        ranked_labels, ranked_scores = ranked_matrix(answers_of_variant, labels, k=max_k)
        trial = metric1.ranked_trial(
            ranked_labels, ranked_scores, truth, n=n, ks=ks, threshold=threshold
        )
        for row in metric1.summarize([trial], group=group):
            out_rows.append({"engine": engine, "variant": variant, "sweep": "k", **row})

    out_dir = Path(out_dir)
    stem = f"metric1_{engine}"
    metric1.write_csv(out_rows, out_dir / f"{stem}.csv")
    no_face = Counter(q.group for q, a in zip(plan.queries, answers, strict=True) if a.no_face)
    notes = [
        f"{len(plan.reconstructions)} reconstructions "
        f"({', '.join(sorted({r.method for r in plan.reconstructions}))}) searched in "
        f"{engine} (collection {plan.collection}), FaceMatchThreshold {threshold}, "
        f"MaxFaces {plan.max_faces}, image-level top-K",
        f"one gallery: the {len(plan.distractors)} distractors of the local run's first draw "
        f"at N = {n} with seed {seed} plus the {len({q.truth for q in plan.queries})} queries' "
        f"true identities, {len(plan.gallery)} photos in all ({enrolment.indexed} indexed now, "
        f"{enrolment.skipped} already there, {len(enrolment.no_face)} without a face)",
        (
            "other queries' true identities dropped from each answer (each query ranked "
            "against N identities)"
            if drop_other_targets
            else "other queries' true identities kept in each answer (one enrolled database, "
            "as in the paper); --drop-other-targets removes them"
        ),
        "N sweep not run for a commercial engine: each N draw needs its own collection "
        "(enrolment billed per photo); rates are from one gallery draw, so the intervals "
        "are Wilson intervals over queries, not over draws",
        "queries in which the engine found no face count as no match: "
        + (", ".join(f"{g} {c}" for g, c in no_face.items()) or "none"),
        f"throttled calls retried: {adapter.retries}",
    ]
    metric1.write_markdown(
        out_rows,
        out_dir / f"{stem}.md",
        title=f"Metric 1: top-K matching in {engine} on {dataset}",
        notes=notes,
        reference=(n, k_ref),
        interval="wilson",
    )
    figures = metric1.write_plots(out_rows, out_dir, reference=(n, k_ref), stem=stem)
    config = {
        "dataset": dataset,
        "engine": engine,
        "collection": plan.collection,
        "region": region or "",
        "methods": methods or [],
        "reconstructions_of": reconstructions_of or "",
        "ks": list(ks),
        "k": k_ref,
        "n": n,
        "seed": seed,
        "include_source": include_source,
        "threshold": threshold,
        "baselines": baselines,
        "drop_other_targets": drop_other_targets,
        "max_faces": plan.max_faces,
        "dataset_fingerprint": plan.dataset.fingerprint,
        "reconstruction_ids": [r.pk for r in plan.reconstructions],
        "distractor_identity_ids": plan.distractors,
        "gallery_image_ids": [g[0] for g in plan.gallery],
        "calls_planned": plan.calls.calls,
        "estimated_cost_usd": plan.calls.cost,
    }
    results = {
        "rows": out_rows,
        "notes": notes,
        "files": [str(p) for p in [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", *figures]],
        "enrolment": {
            "indexed": enrolment.indexed,
            "skipped": enrolment.skipped,
            "no_face": enrolment.no_face,
            "calls": enrolment.calls,
        },
        "retries": adapter.retries,
        "searches": len(answers),
        "queries": [
            {
                "group": q.group,
                "truth": q.truth,
                "source": q.source,
                "reconstruction": q.reconstruction.pk if q.reconstruction else None,
                "no_face": a.no_face,
                "matches": [[m.key, m.similarity] for m in a.matches],
            }
            for q, a in zip(plan.queries, answers, strict=True)
        ],
    }
    return TopKRun.objects.create(
        dataset=plan.dataset,
        recognizer=engine,
        recognizer_sha256="",
        methods=sorted({r.method for r in plan.reconstructions}),
        reconstructions_of=reconstructions_of or "",
        gallery_n=n,
        k=k_ref,
        ks=list(ks),
        ns=[],
        sweep="k",
        trials=1,
        seed=seed,
        include_source=include_source,
        threshold=threshold,
        ranking=TopKRun.Ranking.IMAGE,
        config=config,
        results=_json_safe(results),
        output_dir=str(out_dir),
        queries=len(plan.queries),
        seconds=time.perf_counter() - started,
    )
