"""Match sets: render images once to web size, create match sets, import them from a manifest.

The manifest format is documented in `docs/matchset-manifest.md`.
"""

import io
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image, ImageOps

from survey.models import Candidate, FvrMethod, MatchSet, Study

WEB_SIZE = 224
WEB_QUALITY = 88
MANIFEST_NAME = "manifest.json"
# Study fields a manifest may set: status is always draft, is_demo false, timestamps automatic.
STUDY_FIELDS = frozenset(f.name for f in Study._meta.concrete_fields) - {
    "id",
    "status",
    "is_demo",
    "created_at",
    "opened_at",
    "closed_at",
}
MATCH_SET_FIELDS = {"key", "method", "query_image", "target_identity", "provenance", "candidates"}
CANDIDATE_FIELDS = {"rank", "identity", "image", "is_true", "score"}

ImageSource = Path | bytes


@dataclass(frozen=True)
class CandidateInput:
    """One candidate to create: rank, identity label, source image and the hidden truth."""

    rank: int
    identity: str
    image: ImageSource
    is_true: bool
    score: float | None = None


class MatchSetInvalid(ValueError):
    """A match set that cannot be created; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def web_image(source: ImageSource) -> ContentFile:
    """Render an image to web size: centre-square crop, 224×224, JPEG quality 88."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    square = ImageOps.fit(upright, (WEB_SIZE, WEB_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    square.save(buffer, "JPEG", quality=WEB_QUALITY, optimize=True)
    # The stored name comes from `image_upload_to` (random), never from this one.
    return ContentFile(buffer.getvalue(), name="image.jpg")


def rank_problems(ranks: list[Any], k: int) -> list[str]:
    """What is wrong with a match set's candidate ranks (they must be exactly 1..K)."""
    problems = []
    if len(ranks) != k:
        problems.append(f"has {len(ranks)} candidates; the study's K is {k}")
    whole = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool)]
    for r in ranks:
        if r is None:
            problems.append("a candidate has no rank")
        elif not isinstance(r, int) or isinstance(r, bool):
            problems.append(f"candidate rank {r!r} is not a whole number")
    problems += [f"candidate rank {r} is outside 1..{k}" for r in whole if not 1 <= r <= k]
    problems += [
        f"candidate rank {r} appears {n} times" for r, n in sorted(Counter(whole).items()) if n > 1
    ]
    return problems


def _text_problem(name: str, value: Any, max_length: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{name} is missing"
    if len(value) > max_length:
        return f"{name} is longer than {max_length} characters"
    return None


def method_problem(method: Any) -> str | None:
    """Why `method` is not one of the FVR methods, or None."""
    if method in FvrMethod.values:
        return None
    if method is None or method == "":
        return "method is missing"
    return f"unknown method {method!r} (expected one of {', '.join(FvrMethod.values)})"


def stored_names(match_sets: list[MatchSet]) -> list[str]:
    names = []
    for match_set in match_sets:
        names.append(match_set.query_image.name)
        names += [c.image.name for c in match_set.candidates.all()]
    return [name for name in names if name]


def storage_delete(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


@transaction.atomic
def match_set_create(
    *,
    study: Study,
    key: str,
    method: str,
    query_image: ImageSource,
    target_identity: str,
    candidates: list[CandidateInput],
    provenance: dict,
) -> MatchSet:
    """Create a match set with its K candidates, rendering each image once to web size."""
    problems = rank_problems([c.rank for c in candidates], study.k)
    texts = [("key", key, 100), ("target_identity", target_identity, 200)]
    texts += [(f"candidate rank {c.rank}: identity", c.identity, 200) for c in candidates]
    problems += [p for name, value, n in texts if (p := _text_problem(name, value, n))]
    if (problem := method_problem(method)) is not None:
        problems.append(problem)
    if MatchSet.objects.filter(study=study, key=key).exists():
        problems.append(f"key {key!r} already exists in study {study.slug!r}")
    if problems:
        raise MatchSetInvalid(problems)
    written: list[str] = []
    try:
        match_set = MatchSet(
            study=study,
            key=key,
            method=method,
            target_identity=target_identity,
            provenance=provenance,
        )
        match_set.query_image.save("query.jpg", web_image(query_image), save=False)
        written.append(match_set.query_image.name)
        match_set.save()
        rows = []
        # Files written in a random order: a file's modification time (Last-Modified, ETag)
        # must not tell a participant which candidate the recognizer ranked first.
        for c in random.SystemRandom().sample(candidates, len(candidates)):
            row = Candidate(
                match_set=match_set,
                rank=c.rank,
                identity=c.identity,
                is_true=c.is_true,
                score=c.score,
            )
            row.image.save("candidate.jpg", web_image(c.image), save=False)
            written.append(row.image.name)
            rows.append(row)
        Candidate.objects.bulk_create(sorted(rows, key=lambda row: row.rank))
    except BaseException:
        storage_delete(written)  # the rows roll back; the files would stay behind
        raise
    return match_set


# --- Import from a manifest folder -------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: how many match sets it created, or every problem (none created)."""

    manifest: Path
    study_slug: str = ""
    study_created: bool = False
    created: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Item:
    key: str
    method: str
    query_image: Path
    target_identity: str
    provenance: dict
    candidates: list[CandidateInput]


class _ImageChecker:
    """Resolve image paths inside the manifest folder and check that each decodes (once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(os.path.normpath(folder.absolute()))
        self.checked: dict[Path, str | None] = {}

    def check(self, value: Any) -> tuple[Path | None, str | None]:
        if not isinstance(value, str) or not value.strip():
            return None, "image path is missing"
        # Lexical check only, so that symlinked image folders still work.
        path = Path(os.path.normpath(self.folder / value))
        if Path(value).is_absolute() or not path.is_relative_to(self.folder):
            return None, f"image {value!r} is outside the manifest folder"
        if path not in self.checked:
            self.checked[path] = self._decode_problem(path, value)
        return path, self.checked[path]

    @staticmethod
    def _decode_problem(path: Path, value: str) -> str | None:
        if not path.is_file():
            return f"image {value!r} not found"
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            return f"image {value!r} is not a readable image ({error})"
        return None


def _candidate(
    j: int, raw: Any, k: int, images: _ImageChecker, problems: list[str]
) -> CandidateInput | None:
    if not isinstance(raw, dict):
        problems.append(f"candidates[{j}] must be an object")
        return None
    rank = raw.get("rank")
    valid_rank = isinstance(rank, int) and not isinstance(rank, bool) and 1 <= rank <= k
    label = f"candidate rank {rank}" if valid_rank else f"candidates[{j}]"
    found = []
    if (problem := _text_problem("identity", raw.get("identity"), 200)) is not None:
        found.append(problem)
    if not isinstance(raw.get("is_true"), bool):
        found.append("is_true must be true or false")
    score = raw.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        found.append(f"score {score!r} is not a number")
    path, problem = images.check(raw.get("image"))
    if problem is not None:
        found.append(problem)
    unknown = sorted(set(raw) - CANDIDATE_FIELDS)
    found += [f"unknown field {name!r}" for name in unknown]
    problems += [f"{label}: {p}" for p in found]
    if found or not valid_rank:
        return None  # rank problems are reported once, for the whole match set
    return CandidateInput(
        rank=rank,
        identity=raw["identity"],
        image=path,
        is_true=raw["is_true"],
        score=None if score is None else float(score),
    )


def _item(
    raw: Any, k: int, images: _ImageChecker, problems: list[str]
) -> tuple[str | None, _Item | None]:
    """Validate one entry of `match_sets`; returns its key (if usable) and the parsed item."""
    if not isinstance(raw, dict):
        problems.append("must be an object")
        return None, None
    key = raw.get("key")
    key_problem = _text_problem("key", key, 100)
    if key_problem is not None:
        problems.append(key_problem)
    if (problem := method_problem(raw.get("method"))) is not None:
        problems.append(problem)
    identity_problem = _text_problem("target_identity", raw.get("target_identity"), 200)
    if identity_problem is not None:
        problems.append(identity_problem)
    query, problem = images.check(raw.get("query_image"))
    if problem is not None:
        problems.append(f"query {problem}")
    provenance = raw.get("provenance", {})
    if not isinstance(provenance, dict):
        problems.append("provenance must be an object")
    unknown = set(raw) - MATCH_SET_FIELDS
    problems += [f"unknown field {name!r}" for name in sorted(unknown)]
    raw_candidates = raw.get("candidates")
    if not isinstance(raw_candidates, list):
        problems.append("candidates must be a list")
        raw_candidates = []
    else:
        ranks = [c.get("rank") if isinstance(c, dict) else None for c in raw_candidates]
        problems += rank_problems(ranks, k)
    candidates = [_candidate(j, c, k, images, problems) for j, c in enumerate(raw_candidates)]
    usable_key = key if key_problem is None else None
    if problems:
        return usable_key, None
    return usable_key, _Item(
        key=key,
        method=raw["method"],
        query_image=query,
        target_identity=raw["target_identity"],
        provenance=provenance,
        candidates=candidates,
    )


def _manifest_read(manifest: Path, problems: list[str]) -> dict | None:
    if not manifest.is_file():
        problems.append(f"{manifest}: no such file (a folder to import holds {MANIFEST_NAME})")
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        problems.append(f"{MANIFEST_NAME}: not UTF-8 text ({error})")
        return None
    except json.JSONDecodeError as error:
        problems.append(
            f"{MANIFEST_NAME}: invalid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}"
        )
        return None
    if not isinstance(data, dict):
        problems.append(f"{MANIFEST_NAME}: the top level must be an object")
        return None
    return data


def _study_resolve(
    spec: Any, study_slug: str | None, problems: list[str]
) -> tuple[Study | None, bool]:
    """The study to import into (existing, or new and unsaved) and whether it is new."""
    if study_slug:
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            problems.append(
                f"study {study_slug!r} does not exist (--study names an existing study; "
                'to create one, give a "study" object in the manifest)'
            )
        return study, False
    if isinstance(spec, str) and spec:
        study = Study.objects.filter(slug=spec).first()
        if study is None:
            problems.append(f"study: {spec!r} does not exist (give a study object to create it)")
        return study, False
    if not isinstance(spec, dict):
        problems.append("study: give an existing study's slug or a study object (or --study)")
        return None, False
    existing = Study.objects.filter(slug=spec.get("slug")).first() if spec.get("slug") else None
    if existing is not None:
        if "k" in spec and spec["k"] != existing.k:
            problems.append(
                f"study: k is {spec['k']!r} but the existing study {existing.slug!r} has "
                f"K = {existing.k}"
            )
        return existing, False
    unknown = sorted(set(spec) - STUDY_FIELDS)
    problems += [f"study: unknown field {name!r}" for name in unknown]
    study = Study(**{name: value for name, value in spec.items() if name in STUDY_FIELDS})
    study.status = Study.Status.DRAFT
    try:
        study.full_clean()
    except ValidationError as error:
        for name, messages in sorted(error.message_dict.items()):
            where = "study" if name == "__all__" else f"study.{name}"
            problems += [f"{where}: {message}" for message in messages]
    except (TypeError, ValueError) as error:
        problems.append(f"study: {error}")
    return study, True


def _manifest_location(path: Path) -> tuple[Path, Path]:
    """(folder, manifest file) for a folder or for the manifest file itself."""
    if path.is_file():
        return path.parent, path
    return path, path / MANIFEST_NAME


def matchsets_import(*, path: Path | str, study_slug: str | None = None) -> ImportReport:
    """Validate a manifest folder completely, then create all its match sets atomically."""
    folder, manifest = _manifest_location(Path(path))
    report = ImportReport(manifest=manifest)
    data = _manifest_read(manifest, report.problems)
    if data is None:
        return report
    unknown = sorted(set(data) - {"study", "match_sets"})
    report.problems += [f"{MANIFEST_NAME}: unknown field {name!r}" for name in unknown]
    study, is_new = _study_resolve(data.get("study"), study_slug, report.problems)
    report.study_slug = study.slug if study is not None else (study_slug or "")
    raw_items = data.get("match_sets")
    if not isinstance(raw_items, list) or not raw_items:
        report.problems.append("match_sets: give a non-empty list of match sets")
        raw_items = []
    k = study.k if study is not None and isinstance(study.k, int) else Study().k
    existing_keys = set()
    if study is not None and not is_new:
        existing_keys = set(study.match_sets.values_list("key", flat=True))
    items = _items_checked(raw_items, k, _ImageChecker(folder), existing_keys, report)
    if report.problems:
        return report
    created = _items_create(study, items, is_new=is_new)
    report.study_created = is_new
    report.created = len(created)
    report.by_method = dict(Counter(item.method for item in items))
    return report


def _items_checked(
    raw_items: list, k: int, images: _ImageChecker, existing_keys: set[str], report: ImportReport
) -> list[_Item]:
    """The manifest's match sets that pass every check; the problems of the others go to the
    report, each labelled with its index and key."""
    first_index: dict[str, int] = {}
    items: list[_Item] = []
    for i, raw in enumerate(raw_items):
        found: list[str] = []
        key, item = _item(raw, k, images, found)
        if key is not None:
            if key in first_index:
                found.append(f"duplicate key (also match_sets[{first_index[key]}])")
            else:
                first_index[key] = i
            if key in existing_keys:
                found.append(f"key already exists in study {report.study_slug!r}")
        label = f"match_sets[{i}]" + (f" (key {key})" if key is not None else "")
        report.problems += [f"{label}: {problem}" for problem in found]
        if item is not None and not found:
            items.append(item)
    return items


def _items_create(study: Study, items: list[_Item], *, is_new: bool) -> list[MatchSet]:
    """Create the study (if new) and the match sets in one transaction; on any failure, remove
    the image files written so far."""
    created: list[MatchSet] = []
    written: list[str] = []  # collected as we go: a rollback empties the tables
    try:
        with transaction.atomic():
            if is_new:
                study.save()
            for item in items:
                created.append(
                    match_set_create(
                        study=study,
                        key=item.key,
                        method=item.method,
                        query_image=item.query_image,
                        target_identity=item.target_identity,
                        candidates=item.candidates,
                        provenance=item.provenance,
                    )
                )
                written += stored_names(created[-1:])
    except BaseException:
        storage_delete(written)
        raise
    return created


# --- The demo study: real photos stand in for reconstructions -----------------------------
