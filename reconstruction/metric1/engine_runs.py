"""Metric 1 in a commercial engine (``evaluate_topk --engine``): enrol, search, score, record.

`topk_evaluate_engine` carries out a `engine_plan.topk_engine_plan`: it enrols the plan's one
gallery, searches each query once, cuts every K from that one ranking and stores a TopKRun
with the report's files, every answer and what enrolment did.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruction.metric1.engine_plan import EnginePlan, EngineQuery, topk_engine_plan
from reconstruction.metric1.engines import PAPER_ENGINE_K, PAPER_ENGINE_N
from reconstruction.models import FaceImage

if TYPE_CHECKING:
    from reconstruction.metric1.engines import Engine, EnrolSummary, SearchResult

__all__ = ["EnginePlan", "EngineQuery", "topk_engine_plan", "topk_evaluate_engine"]


@dataclass(frozen=True)
class _Searched:
    """What the engine did: the adapter (its retry count), the threshold it used, the
    enrolment and one answer per query of the plan."""

    adapter: Engine
    threshold: float
    enrolment: EnrolSummary
    answers: list[SearchResult]


def _photo_bytes(root: Path, relative_path: str, sha256: str) -> bytes:
    """A dataset photo's bytes, refused when it changed since `import_faces`."""
    data = (root / relative_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{root / relative_path} changed since import_faces: re-import it.")
    return data


def _query_bytes(query: EngineQuery, root: Path, photo_of: dict[int, tuple]) -> bytes:
    """The image a query sends: the stored reconstruction, or the baseline's photo."""
    if query.reconstruction is not None:
        with query.reconstruction.image.open("rb") as handle:
            return handle.read()
    _, _, path, sha = photo_of[query.source]
    return _photo_bytes(root, path, sha)


def _enrol_and_search(
    plan: EnginePlan, *, region: str | None, threshold: float | None
) -> _Searched:
    """Enrol the plan's gallery (resumably: faces already there are skipped), then search each
    query once with ``threshold`` (None: the engine's own default)."""
    from reconstruction.metric1.engines import GalleryImage, get_engine

    root = Path(plan.dataset.root)
    photo_of = {
        g[0]: g
        for g in FaceImage.objects.filter(
            pk__in=[q.source for q in plan.queries if q.reconstruction is None]
        ).values_list("id", "identity_id", "relative_path", "sha256")
    }
    adapter = get_engine(plan.engine, collection_id=plan.collection, region=region)
    if threshold is None:
        threshold = adapter.default_threshold
    enrolment = adapter.enrol(
        (
            GalleryImage(plan.names[identity], str(image), _photo_bytes(root, path, sha))
            for image, identity, path, sha in plan.gallery
        ),
        strict=True,
    )
    answers = [
        adapter.search(_query_bytes(query, root, photo_of), k=plan.max_faces, threshold=threshold)
        for query in plan.queries
    ]
    return _Searched(adapter, threshold, enrolment, answers)


def _answers_of_variant(
    plan: EnginePlan, answers: list[SearchResult], *, include: bool, max_k: int
) -> list[SearchResult]:
    """Each answer as the variant scores it, cut at max K: without the source photo unless
    ``include`` and, with ``drop_other_targets``, without other queries' true identities (each
    query then ranked against its own N identities)."""
    from reconstruction.metric1.engines import SearchResult

    identity_of_key = {str(image): identity for image, identity, _, _ in plan.gallery}
    true_ids = {q.truth for q in plan.queries}
    return [
        SearchResult(
            matches=tuple(
                m
                for m in answer.matches
                if (
                    not plan.drop_other_targets
                    or identity_of_key.get(m.key) == query.truth
                    or identity_of_key.get(m.key) not in true_ids
                )
                and (include or m.key != str(query.source))
            )[:max_k],
            no_face=answer.no_face,
        )
        for query, answer in zip(plan.queries, answers, strict=True)
    ]


def _scored_rows(
    plan: EnginePlan, searched: _Searched, *, ks: tuple[int, ...], n: int, include_source: bool
) -> list[dict[str, Any]]:
    """Summary rows of every K for the excluded and (``include_source``) included variants."""
    import numpy as np

    from reconstruction.metric1 import scoring
    from reconstruction.metric1.engines import ranked_matrix

    labels = {name: identity for identity, name in plan.names.items()}
    truth = [q.truth for q in plan.queries]
    group = np.array([q.group for q in plan.queries], dtype=object)
    max_k = max(ks)
    variants = [("excluded", False)] + ([("included", True)] if include_source else [])
    out_rows: list[dict[str, Any]] = []
    for variant, include in variants:
        answers = _answers_of_variant(plan, searched.answers, include=include, max_k=max_k)
        ranked_labels, ranked_scores = ranked_matrix(answers, labels, k=max_k)
        trial = scoring.ranked_trial(
            ranked_labels, ranked_scores, truth, n=n, ks=ks, threshold=searched.threshold
        )
        for row in scoring.summarize([trial], group=group):
            out_rows.append({"engine": plan.engine, "variant": variant, "sweep": "k", **row})
    return out_rows


def _run_notes(plan: EnginePlan, searched: _Searched, *, n: int, seed: int) -> list[str]:
    """The report's notes: what was searched where, the one gallery, and the caveats."""
    enrolment = searched.enrolment
    no_face = Counter(
        q.group for q, a in zip(plan.queries, searched.answers, strict=True) if a.no_face
    )
    return [
        f"{len(plan.reconstructions)} reconstructions "
        f"({', '.join(sorted({r.method for r in plan.reconstructions}))}) searched in "
        f"{plan.engine} (collection {plan.collection}), FaceMatchThreshold "
        f"{searched.threshold}, MaxFaces {plan.max_faces}, image-level top-K",
        f"one gallery: the {len(plan.distractors)} distractors of the local run's first draw "
        f"at N = {n} with seed {seed} plus the {len({q.truth for q in plan.queries})} queries' "
        f"true identities, {len(plan.gallery)} photos in all ({enrolment.indexed} indexed now, "
        f"{enrolment.skipped} already there, {len(enrolment.no_face)} without a face)",
        (
            "other queries' true identities dropped from each answer (each query ranked "
            "against N identities)"
            if plan.drop_other_targets
            else "other queries' true identities kept in each answer (one enrolled database, "
            "as in the paper); --drop-other-targets removes them"
        ),
        "N sweep not run for a commercial engine: each N draw needs its own collection "
        "(enrolment billed per photo); rates are from one gallery draw, so the intervals "
        "are Wilson intervals over queries, not over draws",
        "queries in which the engine found no face count as no match: "
        + (", ".join(f"{g} {c}" for g, c in no_face.items()) or "none"),
        f"throttled calls retried: {searched.adapter.retries}",
    ]


def _run_config(
    asked: dict[str, Any], plan: EnginePlan, searched: _Searched, *, k: int, include_source: bool
) -> dict[str, Any]:
    """Every option of an engine run (``asked``: the plan's arguments; ``k``: the reference K)
    and what it planned: the gallery, the queries and the calls."""
    return {
        "dataset": asked["dataset"],
        "engine": asked["engine"],
        "collection": plan.collection,
        "region": asked["region"] or "",
        "methods": asked["methods"] or [],
        "reconstructions_of": asked["reconstructions_of"] or "",
        "ks": list(asked["ks"]),
        "k": k,
        "n": asked["n"],
        "seed": asked["seed"],
        "include_source": include_source,
        "threshold": searched.threshold,
        "baselines": asked["baselines"],
        "drop_other_targets": asked["drop_other_targets"],
        "max_faces": plan.max_faces,
        "dataset_fingerprint": plan.dataset.fingerprint,
        "reconstruction_ids": [r.pk for r in plan.reconstructions],
        "distractor_identity_ids": plan.distractors,
        "gallery_image_ids": [g[0] for g in plan.gallery],
        "calls_planned": plan.calls.calls,
        "estimated_cost_usd": plan.calls.cost,
    }


def _run_results(
    plan: EnginePlan,
    searched: _Searched,
    *,
    out_rows: list[dict[str, Any]],
    notes: list[str],
    files: list[Path],
) -> dict[str, Any]:
    """What a TopKRun of an engine stores: the rows, the report, enrolment and every answer."""
    enrolment = searched.enrolment
    return {
        "rows": out_rows,
        "notes": notes,
        "files": [str(p) for p in files],
        "enrolment": {
            "indexed": enrolment.indexed,
            "skipped": enrolment.skipped,
            "no_face": enrolment.no_face,
            "calls": enrolment.calls,
        },
        "retries": searched.adapter.retries,
        "searches": len(searched.answers),
        "queries": [
            {
                "group": q.group,
                "truth": q.truth,
                "source": q.source,
                "reconstruction": q.reconstruction.pk if q.reconstruction else None,
                "no_face": a.no_face,
                "matches": [[m.key, m.similarity] for m in a.matches],
            }
            for q, a in zip(plan.queries, searched.answers, strict=True)
        ],
    }


def _run_record(
    config: dict[str, Any],
    plan: EnginePlan,
    *,
    results: dict[str, Any],
    out_dir: Path,
    started: float,
) -> Any:
    """The TopKRun of an engine run (one image-level K sweep); its columns read from ``config``."""
    from reconstruction.metric1.report import json_safe
    from reconstruction.models import TopKRun

    return TopKRun.objects.create(
        dataset=plan.dataset,
        recognizer=config["engine"],
        recognizer_sha256="",
        methods=sorted({r.method for r in plan.reconstructions}),
        reconstructions_of=config["reconstructions_of"],
        gallery_n=config["n"],
        k=config["k"],
        ks=list(config["ks"]),
        ns=[],
        sweep="k",
        trials=1,
        seed=config["seed"],
        include_source=config["include_source"],
        threshold=config["threshold"],
        ranking=TopKRun.Ranking.IMAGE,
        config=config,
        results=json_safe(results),
        output_dir=str(out_dir),
        queries=len(plan.queries),
        seconds=time.perf_counter() - started,
    )


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
    from reconstruction.metric1.report import write_report

    started = time.perf_counter()
    # The plan's arguments, as the run's config records them.
    asked = {"dataset": dataset, "engine": engine, "collection": collection, "region": region}
    asked |= {"methods": methods, "reconstructions_of": reconstructions_of, "ks": ks, "n": n}
    asked |= {"seed": seed, "baselines": baselines, "drop_other_targets": drop_other_targets}
    plan = topk_engine_plan(**asked)
    searched = _enrol_and_search(plan, region=region, threshold=threshold)
    k_ref = k if k in ks else max(ks)
    out_rows = _scored_rows(plan, searched, ks=ks, n=n, include_source=include_source)
    notes = _run_notes(plan, searched, n=n, seed=seed)
    files = write_report(
        out_rows,
        Path(out_dir),
        stem=f"metric1_{engine}",
        title=f"Metric 1: top-K matching in {engine} on {dataset}",
        notes=notes,
        reference=(n, k_ref),
        interval="wilson",
    )
    results = _run_results(plan, searched, out_rows=out_rows, notes=notes, files=files)
    config = _run_config(asked, plan, searched, k=k_ref, include_source=include_source)
    return _run_record(config, plan, results=results, out_dir=Path(out_dir), started=started)
