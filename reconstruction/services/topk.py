"""Metric 1: top-K evaluation runs over stored reconstructions and embeddings."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from reconstruction import alignment
from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Reconstruction,
    Split,
)

logger = logging.getLogger(__name__)


# --- Metric 1: top-K matching ------------------------------------------------------------------


def _reconstruction_vectors(
    rows: list[Any], *, recognizer: str, device: str, cache_dir: Path | None
) -> Any:
    """F' vectors of stored reconstruction images, cached by image name in an .npz file."""
    import numpy as np

    from reconstruction.recognizers import get_recognizer

    engine = get_recognizer(recognizer)
    cache: dict[str, Any] = {}
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{recognizer}-{engine.weights_sha256[:16]}.npz"
        if cache_file.exists():
            with np.load(cache_file) as stored:
                cache = {name: stored[name] for name in stored.files}
    missing = [row for row in rows if row.image.name not in cache]
    if missing:
        pixels = []
        for row in missing:
            with row.image.open("rb") as handle:
                pixels.append(alignment.decode_rgb(handle.read()))  # (112, 112, 3)
        vectors = engine.embed(np.stack(pixels), device=device)
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
    random other face of the pool ("random"). Reconstruction images are embedded in F' and
    cached in ``cache_dir``; gallery vectors are the stored Embedding rows.
    """
    import numpy as np

    from reconstruction import metric1
    from reconstruction.gallery import stored_vectors
    from reconstruction.models import TopKRun
    from reconstruction.recognizers import get_recognizer

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

    rows = Reconstruction.objects.filter(target__dataset=source).select_related("target")
    if methods:
        rows = rows.filter(method__in=methods)
    if reconstructions_of:
        rows = rows.filter(recognizer=reconstructions_of)
    rows = [
        r
        for r in rows.order_by("method", "recognizer", "target_id", "id")
        if r.target_id in position
    ]
    if not rows:
        raise ValueError("no reconstructions of target- or gallery-split images match")
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
