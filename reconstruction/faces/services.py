"""Face datasets: importing identity-per-folder photos (detect, align, checksum, split)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from reconstruction.faces import alignment
from reconstruction.faces.datasets import (
    DEFAULT_SPLITS,
    DatasetScan,
    dataset_scan,
    splits_assign,
    splits_parse,
)
from reconstruction.models import (
    FaceDataset,
    FaceImage,
    Identity,
    Split,
    aligned_upload_to,
)
from reconstruction.storage import files_delete, png_bytes

logger = logging.getLogger(__name__)


WRITE_BATCH = 64  # images per transaction: short transactions, few commits
IDENTITY_CHUNK = 256  # identities whose existing rows are read in one query
UPDATED_FIELDS = [
    "sha256",
    "width",
    "height",
    "status",
    "message",
    "detector",
    "faces_found",
    "detection_score",
    "box",
    "landmarks",
    "dlib_landmarks",
    "aligned",
    "crop160",
    "updated_at",
]


@dataclass
class ImportSummary:
    """What `dataset_import` found and did; lists name files relative to the root."""

    dataset: str
    identities: int
    identities_created: int
    splits: dict[str, int]
    splits_changed: int
    images: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ok: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped_identities: int = 0
    ignored_files: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # totals over processed images

    @property
    def processed(self) -> int:
        """Images decoded and aligned in this run (new or changed)."""
        return self.created + self.updated

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    row: FaceImage
    is_new: bool
    new_files: list[str]
    old_files: list[str]


def _face_image_fill(
    row: FaceImage, *, data: bytes | None, error: str, relative_path: str, stage_ms: Counter
) -> list[str]:
    """Decode and align one photo into `row`; save its crops; return the stored file names."""
    row.sha256 = hashlib.sha256(data).hexdigest() if data is not None else ""
    row.detector = alignment.DETECTOR_NAME
    for name in ("box", "landmarks", "dlib_landmarks", "detection_score", "width", "height"):
        setattr(row, name, None)
    row.faces_found, row.aligned, row.crop160, row.message = 0, "", "", ""
    if data is None:
        row.status, row.message = FaceImage.Status.UNREADABLE, error[:500]
        return []
    try:
        pixels = alignment.decode_rgb(data)
    except alignment.UnreadableImageError as exc:
        row.status, row.message = FaceImage.Status.UNREADABLE, str(exc)[:500]
        return []
    result = alignment.align_face(pixels)
    stage_ms.update(result.timings_ms)
    row.width, row.height, row.faces_found = result.width, result.height, result.faces_found
    face = result.face
    if face is None:
        row.status, row.message = FaceImage.Status.NO_FACE, "the HOG detector found no face"
        return []
    start = time.perf_counter()
    row.status = FaceImage.Status.OK
    row.detection_score = face.detection.score
    row.box = list(face.detection.box)
    row.landmarks = [[round(float(v), 2) for v in p] for p in face.points]
    row.dlib_landmarks = [[round(float(v), 2) for v in p] for p in face.dlib_points]
    stem = relative_path.rsplit(".", 1)[0]
    saved = []
    for field_name, pixels_out, tag in (
        ("aligned", face.aligned, "112"),
        ("crop160", face.crop160, "160"),
    ):
        target = aligned_upload_to(row, f"{stem}-{row.sha256[:12]}-{tag}.png")
        name = default_storage.save(target, ContentFile(png_bytes(pixels_out)))
        saved.append(name)
        setattr(row, field_name, name)
    stage_ms["store"] += (time.perf_counter() - start) * 1000
    return saved


def _flush(pending: list[_Pending]) -> None:
    """Write a batch of rows in one transaction; on failure remove the files just stored."""
    if not pending:
        return
    now = timezone.now()
    for item in pending:
        item.row.updated_at = now
    try:
        with transaction.atomic():
            FaceImage.objects.bulk_create([p.row for p in pending if p.is_new])
            changed = [p.row for p in pending if not p.is_new]
            if changed:
                FaceImage.objects.bulk_update(changed, UPDATED_FIELDS)
            old = [name for p in pending for name in p.old_files]
            if old:
                transaction.on_commit(lambda: files_delete(old))
    except BaseException:
        files_delete([name for p in pending for name in p.new_files])
        raise
    pending.clear()


def _dataset_fingerprint(dataset: FaceDataset) -> str:
    digest = hashlib.sha256()
    rows = dataset.images.order_by("relative_path").values_list("relative_path", "sha256", "status")
    for path, sha, status in rows.iterator(chunk_size=2000):
        digest.update(f"{path}\t{sha}\t{status}\n".encode())
    return digest.hexdigest()


def _import_settings(
    *, splits: str, seed: int, limit_identities: int | None, min_images: int
) -> dict:
    """The settings recorded on the dataset: the split rules and the alignment geometry."""
    return {
        "splits": splits,
        "seed": seed,
        "limit_identities": limit_identities,
        "min_images": min_images,
        "detector": alignment.DETECTOR_NAME,
        "template": alignment.ARCFACE_TEMPLATE.tolist(),
        "aligned_size": alignment.ALIGNED_SIZE,
        "crop_size": alignment.CROP_SIZE,
        "crop_template_scale": alignment.CROP_SIZE / alignment.ALIGNED_SIZE,
    }


def _dataset_identities_sync(
    *, name: str, root: Path, settings: dict, assignment: dict[str, str]
) -> tuple[FaceDataset, int, int]:
    """Create or update the dataset row and its identities; return (dataset, created, moved)."""
    with transaction.atomic():
        dataset, _ = FaceDataset.objects.get_or_create(
            name=name, defaults={"root": str(root.resolve())}
        )
        dataset.root = str(root.resolve())
        dataset.import_settings = settings
        dataset.save()
        existing = dict(dataset.identities.values_list("name", "split"))
        new = [
            Identity(dataset=dataset, name=n, split=assignment[n])
            for n in assignment
            if n not in existing
        ]
        Identity.objects.bulk_create(new, batch_size=500)
        moved = [n for n in assignment if n in existing and existing[n] != assignment[n]]
        for split in {assignment[n] for n in moved}:
            dataset.identities.filter(name__in=[n for n in moved if assignment[n] == split]).update(
                split=split
            )
    return dataset, len(new), len(moved)


def _existing_rows(identity_ids: list[int]) -> dict[str, FaceImage]:
    """The stored image rows of these identities, by relative path (only the fields compared)."""
    return {
        row.relative_path: row
        for row in FaceImage.objects.filter(identity_id__in=identity_ids).only(
            "id",
            "relative_path",
            "sha256",
            "status",
            "message",
            "aligned",
            "crop160",
            "dataset_id",
        )
    }


def _photo_read(path: Path) -> tuple[bytes | None, str]:
    """The file's bytes, or None and the reason it could not be read."""
    try:
        return path.read_bytes(), ""
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"


def _row_unchanged(row: FaceImage | None, data: bytes | None) -> bool:
    """Whether a stored row already describes these bytes (same checksum, or still unreadable)."""
    if row is None:
        return False
    if data is not None:
        return row.sha256 == hashlib.sha256(data).hexdigest()
    return row.status == FaceImage.Status.UNREADABLE and not row.sha256


def _photo_process(
    *,
    row: FaceImage | None,
    dataset: FaceDataset,
    identity_id: int,
    relative_path: str,
    data: bytes | None,
    error: str,
    stage_ms: Counter,
) -> _Pending:
    """Decode and align one new or changed photo into a (new or existing) row awaiting a write."""
    is_new = row is None
    old_files = [] if is_new else [n for n in (row.aligned.name, row.crop160.name) if n]
    if is_new:
        row = FaceImage(dataset=dataset, identity_id=identity_id, relative_path=relative_path)
    row.dataset = dataset
    new_files = _face_image_fill(
        row, data=data, error=error, relative_path=relative_path, stage_ms=stage_ms
    )
    return _Pending(row, is_new, new_files, old_files)


def _images_import(
    *,
    scan: DatasetScan,
    dataset: FaceDataset,
    summary: ImportSummary,
    stage_ms: Counter,
    progress: bool,
) -> dict[str, tuple[str, str]]:
    """Process every new or changed photo in batches; return each path's (status, message)."""
    from tqdm import tqdm

    identity_ids = dict(dataset.identities.values_list("name", "id"))
    pending: list[_Pending] = []
    outcomes: dict[str, tuple[str, str]] = {}  # relative path → (status, message)
    bar = tqdm(total=scan.image_count, unit="img", disable=not progress, desc=summary.dataset)
    try:
        for first in range(0, len(scan.identities), IDENTITY_CHUNK):
            chunk = scan.identities[first : first + IDENTITY_CHUNK]
            rows = _existing_rows([identity_ids[i.name] for i in chunk])
            for identity in chunk:
                for relative_path in identity.files:
                    bar.update(1)
                    data, error = _photo_read(scan.root / relative_path)
                    row = rows.get(relative_path)
                    if _row_unchanged(row, data):
                        summary.unchanged += 1
                        outcomes[relative_path] = (row.status, row.message)
                        continue
                    item = _photo_process(
                        row=row,
                        dataset=dataset,
                        identity_id=identity_ids[identity.name],
                        relative_path=relative_path,
                        data=data,
                        error=error,
                        stage_ms=stage_ms,
                    )
                    pending.append(item)
                    outcomes[relative_path] = (item.row.status, item.row.message)
                    if item.is_new:
                        summary.created += 1
                    else:
                        summary.updated += 1
                    if len(pending) >= WRITE_BATCH:
                        _flush(pending)
        _flush(pending)
    except BaseException:
        files_delete([name for p in pending for name in p.new_files])
        raise
    finally:
        bar.close()
    return outcomes


def _outcomes_summarize(summary: ImportSummary, outcomes: dict[str, tuple[str, str]]) -> None:
    """Fill the summary's counts and lists of photos without a usable face."""
    summary.ok = sum(1 for status, _ in outcomes.values() if status == FaceImage.Status.OK)
    summary.no_face = [
        p for p, (status, _) in outcomes.items() if status == FaceImage.Status.NO_FACE
    ]
    summary.unreadable = [
        (p, message)
        for p, (status, message) in outcomes.items()
        if status == FaceImage.Status.UNREADABLE
    ]


def dataset_import(
    *,
    name: str,
    path: Path | str,
    splits: str = DEFAULT_SPLITS,
    seed: int = 0,
    limit_identities: int | None = None,
    min_images: int = 1,
    progress: bool = True,
) -> ImportSummary:
    """Import (or update) an identity-per-folder dataset: detect, align, record checksums.

    Idempotent: a file whose SHA-256 matches its row is skipped; a changed file is processed
    again and its old crops are deleted. Each batch of rows is written in one transaction
    after its files are stored, so no row ever points at a missing crop.
    """
    started = time.perf_counter()
    rules = splits_parse(splits, allowed=Split.values)
    scan = dataset_scan(Path(path), limit_identities=limit_identities, min_images=min_images)
    assignment = splits_assign({i.name: len(i.files) for i in scan.identities}, rules, seed=seed)
    settings = _import_settings(
        splits=splits, seed=seed, limit_identities=limit_identities, min_images=min_images
    )
    dataset, created, moved = _dataset_identities_sync(
        name=name, root=scan.root, settings=settings, assignment=assignment
    )
    summary = ImportSummary(
        dataset=name,
        identities=len(scan.identities),
        identities_created=created,
        splits=dict(Counter(assignment.values())),
        splits_changed=moved,
        images=scan.image_count,
        skipped_identities=scan.skipped_identities,
        ignored_files=scan.ignored_files,
    )
    stage_ms: Counter = Counter()
    outcomes = _images_import(
        scan=scan, dataset=dataset, summary=summary, stage_ms=stage_ms, progress=progress
    )
    _outcomes_summarize(summary, outcomes)
    dataset.fingerprint = _dataset_fingerprint(dataset)
    dataset.imported_at = timezone.now()
    dataset.save(update_fields=["fingerprint", "imported_at"])
    summary.stage_ms = dict(stage_ms)
    summary.seconds = time.perf_counter() - started
    return summary
