"""Metric 1 over the database: top-K runs over stored reconstructions and embeddings.

`topk_evaluate` scores the reconstructions in a local F' with the fast sweeps of
`scoring.ScorePool`. The commercial-engine run (`engine_plan.topk_engine_plan`,
`engine_runs.topk_evaluate_engine`) is re-exported here, so this module is the stage's one
entry for services.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconstruction.faces import alignment
from reconstruction.metric1.engine_plan import EnginePlan, EngineQuery, topk_engine_plan
from reconstruction.metric1.engine_runs import topk_evaluate_engine
from reconstruction.metric1.selection import pool_rows, reconstructions_chosen
from reconstruction.models import FaceDataset, Reconstruction

__all__ = ["EnginePlan", "EngineQuery", "topk_engine_plan", "topk_evaluate", "topk_evaluate_engine"]

logger = logging.getLogger(__name__)

SweepPoint = tuple[str, int, tuple[int, ...]]  # (axis "k" or "n", gallery N, the Ks scored)


@dataclass(frozen=True)
class _Pool:
    """The gallery pool in F': every candidate image, its identity and its stored vector."""

    ids: Any  # (P,) FaceImage ids
    labels: Any  # (P,) identity ids
    vectors: Any  # (P, D) F' vectors
    position: dict[int, int]  # FaceImage id → pool row


@dataclass(frozen=True)
class _Queries:
    """The queries of a local run: reconstructions, then the photo and random baselines."""

    vectors: Any  # (Q, D) F' vectors
    truth: list[int]  # identity ids
    sources: list[int]  # FaceImage ids left out of the gallery in the "excluded" variant
    group: Any  # (Q,) object: method (or method/F), "photo" or "random"


@dataclass(frozen=True)
class _Inputs:
    """What a local run scores: the dataset, F''s weights, the pool and the queries."""

    source: FaceDataset
    weights_sha256: str
    pool: _Pool
    rows: list[Reconstruction]  # the reconstructions queried
    queries: _Queries


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


def _pool_load(source: FaceDataset, *, recognizer: str, weights_sha256: str) -> _Pool:
    """The dataset's pooled images with their stored, current F' vectors."""
    import numpy as np

    from reconstruction.metric1.gallery import stored_vectors

    rows = pool_rows(source, "id", "identity_id")
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    labels = np.array([r[1] for r in rows], dtype=np.int64)
    vectors = stored_vectors(ids.tolist(), recognizer=recognizer, weights_sha256=weights_sha256)
    return _Pool(ids, labels, vectors, {int(i): p for p, i in enumerate(ids)})


def _queries_build(
    rows: list[Reconstruction],
    pool: _Pool,
    options: dict[str, Any],
    *,
    device: str,
    cache_dir: Path | None,
) -> _Queries:
    """The reconstructions in F', then (``baselines``) each target's own photo ("photo") and a
    random face of another identity ("random", drawn with the run's seed)."""
    import numpy as np

    several_f = len({r.recognizer for r in rows}) > 1
    groups = [f"{r.method}/{r.recognizer}" if several_f else r.method for r in rows]
    vectors = [
        _reconstruction_vectors(
            rows, recognizer=options["recognizer"], device=device, cache_dir=cache_dir
        )
    ]
    truth = [r.target.identity_id for r in rows]
    sources = [r.target_id for r in rows]
    if options["baselines"]:
        targets = list(dict.fromkeys(r.target_id for r in rows))
        target_identity = {r.target_id: r.target.identity_id for r in rows}
        vectors.append(pool.vectors[[pool.position[t] for t in targets]])
        groups += ["photo"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += targets
        rng = np.random.default_rng([options["seed"], 1])
        others = np.flatnonzero(~np.isin(pool.labels, list(set(truth))))
        picked = rng.choice(others, size=len(targets), replace=len(others) < len(targets))
        vectors.append(pool.vectors[picked])
        groups += ["random"] * len(targets)
        truth += [target_identity[t] for t in targets]
        sources += pool.ids[picked].tolist()
    return _Queries(np.concatenate(vectors), truth, sources, np.array(groups, dtype=object))


def _run_inputs(options: dict[str, Any], *, device: str, cache_dir: Path | None) -> _Inputs:
    """Load the pool with its F' vectors, choose the reconstructions and embed the queries."""
    from reconstruction.recognizers.registry import get_recognizer

    source = FaceDataset.objects.get(name=options["dataset"])
    recognizer = options["recognizer"]
    weights_sha256 = get_recognizer(recognizer).weights_sha256
    pool = _pool_load(source, recognizer=recognizer, weights_sha256=weights_sha256)
    rows = reconstructions_chosen(
        source=source,
        methods=options["methods"],
        reconstructions_of=options["reconstructions_of"],
        position=pool.position,
    )
    queries = _queries_build(rows, pool, options, device=device, cache_dir=cache_dir)
    return _Inputs(source, weights_sha256, pool, rows, queries)


def _sweep_plan(options: dict[str, Any]) -> list[SweepPoint]:
    """The K sweep at N = ``n`` and the N sweep at K = ``k``, as ``sweep`` asks."""
    plan = []
    if options["sweep"] in ("k", "both"):
        plan.append(("k", options["n"], tuple(options["ks"])))
    if options["sweep"] in ("n", "both"):
        plan += [("n", size, (options["k"],)) for size in options["ns"]]
    return plan


def _sweep_rows(
    queries: _Queries, pool: _Pool, options: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Summary rows of every sweep point for each source variant, and notes on the N skipped."""
    import numpy as np

    from reconstruction.metric1 import scoring

    include_source, seed = options["include_source"], options["seed"]
    variants = [("excluded", False)] + ([("included", True)] if include_source else [])
    out_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for variant_index, (variant, include) in enumerate(variants):
        scored = scoring.ScorePool(
            queries.vectors,
            truth=queries.truth,
            sources=queries.sources,
            pool=pool.vectors,
            pool_labels=pool.labels,
            pool_image_ids=pool.ids,
            include_source=include,
        )
        eligible = scored.distractor_columns()
        for axis, size, sweep_ks in _sweep_plan(options):
            if size - 1 > len(eligible):
                if variant_index == 0:
                    notes.append(f"N = {size} skipped: only {len(eligible)} distractor identities")
                continue
            rng = np.random.default_rng([seed, size])  # same galleries for both variants
            results = scored.draw(
                n=size,
                ks=sweep_ks,
                trials=options["trials"],
                rng=rng,
                threshold=options["threshold"],
                by=options["by"],
            )
            for row in scoring.summarize(results, group=queries.group):
                out_rows.append(
                    {"engine": options["recognizer"], "variant": variant, "sweep": axis, **row}
                )
    return out_rows, notes


def _run_config(
    options: dict[str, Any], *, source: FaceDataset, rows: list[Reconstruction]
) -> dict[str, Any]:
    """A local run's config: its options, then what it read (the reconstruction view, the
    dataset's fingerprint, the reconstructions)."""
    from reconstruction.recognizers.registry import reconstruction_view_description

    return {
        **options,
        "reconstruction_view": reconstruction_view_description(options["recognizer"]),
        "dataset_fingerprint": source.fingerprint,
        "reconstruction_ids": [r.pk for r in rows],
    }


def _run_notes(
    rows: list[Reconstruction], pool: _Pool, config: dict[str, Any], *, skipped: list[str]
) -> list[str]:
    """The report's notes: what was queried against what, then the sweep points skipped."""
    return [
        f"{len(rows)} reconstructions ({', '.join(sorted({r.method for r in rows}))}), "
        f"pool {len(pool.ids)} images of {len(set(pool.labels.tolist()))} identities, "
        f"{config['trials']} gallery draws per N, {config['by']}-level top-K, "
        f"threshold {config['threshold']}",
        "intervals: 2.5–97.5 percentiles over gallery draws (Wilson for pooled in the CSV)",
        *skipped,
    ]


def _report_write(
    out_rows: list[dict[str, Any]], notes: list[str], out_dir: Path, config: dict[str, Any]
) -> dict[str, Any]:
    """The run's CSV, Markdown and figures in ``out_dir``; the results a TopKRun stores."""
    from reconstruction.metric1.report import write_report

    recognizer = config["recognizer"]
    files = write_report(
        out_rows,
        out_dir,
        stem=f"metric1_{recognizer}",
        title=f"Metric 1: top-K matching in {recognizer} on {config['dataset']}",
        notes=notes,
        reference=(config["n"], config["k"]),
    )
    return {"rows": out_rows, "notes": notes, "files": [str(p) for p in files]}


def _run_record(
    config: dict[str, Any],
    inputs: _Inputs,
    *,
    results: dict[str, Any],
    out_dir: Path,
    started: float,
) -> Any:
    """The TopKRun of a local run; its columns are read from ``config``."""
    from reconstruction.metric1.report import json_safe
    from reconstruction.models import TopKRun

    return TopKRun.objects.create(
        dataset=inputs.source,
        recognizer=config["recognizer"],
        recognizer_sha256=inputs.weights_sha256,
        methods=sorted({r.method for r in inputs.rows}),
        reconstructions_of=config["reconstructions_of"],
        gallery_n=config["n"],
        k=config["k"],
        ks=list(config["ks"]),
        ns=list(config["ns"]),
        sweep=config["sweep"],
        trials=config["trials"],
        seed=config["seed"],
        include_source=config["include_source"],
        threshold=config["threshold"],
        ranking=config["by"],
        config=config,
        results=json_safe(results),
        output_dir=str(out_dir),
        queries=len(inputs.queries.vectors),
        seconds=time.perf_counter() - started,
    )


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
    started = time.perf_counter()
    # The run's options, as its config records them and as its steps read them.
    options = {"dataset": dataset, "recognizer": recognizer, "methods": methods or []}
    options |= {"reconstructions_of": reconstructions_of or "", "ks": list(ks), "ns": list(ns)}
    options |= {"k": k, "n": n, "sweep": sweep, "trials": trials, "seed": seed}
    options |= {"include_source": include_source, "threshold": threshold, "by": by}
    options["baselines"] = baselines
    inputs = _run_inputs(options, device=device, cache_dir=cache_dir)
    out_rows, skipped = _sweep_rows(inputs.queries, inputs.pool, options)
    config = _run_config(options, source=inputs.source, rows=inputs.rows)
    notes = _run_notes(inputs.rows, inputs.pool, config, skipped=skipped)
    results = _report_write(out_rows, notes, Path(out_dir), config)
    return _run_record(config, inputs, results=results, out_dir=Path(out_dir), started=started)
