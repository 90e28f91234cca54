"""What a Metric 1 run over the database scores: the gallery pool and the queried rows.

Both runs, in a local F' (`services.topk_evaluate`) and in a commercial engine
(`engine_runs.topk_evaluate_engine`), draw galleries from the same pool (every ok target-
and gallery-split image; train identities never enrol) and query the same reconstructions.
Database reads only.
"""

from __future__ import annotations

from typing import Any

from reconstruction.models import FaceDataset, FaceImage, Reconstruction, Split

__all__ = ["pool_rows", "reconstructions_chosen"]


def pool_rows(source: FaceDataset, *fields: str) -> list[tuple[Any, ...]]:
    """``fields`` of the dataset's ok target- and gallery-split images, by identity and path."""
    rows = list(
        FaceImage.objects.ok()
        .filter(dataset=source, identity__split__in=[Split.TARGET, Split.GALLERY])
        .order_by("identity_id", "relative_path")
        .values_list(*fields)
    )
    if not rows:
        raise ValueError(f"dataset {source.name!r} has no target or gallery images")
    return rows


def reconstructions_chosen(
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
