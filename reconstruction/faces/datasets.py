"""Identity-per-folder datasets on disk: scanning, and identity-disjoint split rules.

Layout: ``ROOT/<identity>/<image>`` (LFW, FaceScrub, VGGFace2 and CASIA-WebFace all reduce
to it). Images are the files directly inside an identity folder whose suffix is one of
``IMAGE_SUFFIXES`` (any case); hidden files, other files and nested folders are ignored
and counted. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".bmp"})
DEFAULT_SPLITS = "train=0.5,target=0.2,gallery=0.3"
SPLIT_RE = re.compile(r"^(?P<name>[a-z]+)=(?P<fraction>[0-9]*\.?[0-9]+)(?:@(?P<min>[0-9]+))?$")


class DatasetLayoutError(ValueError):
    """The folder is not an identity-per-folder dataset; the message says what to do."""


@dataclass(frozen=True)
class ScannedIdentity:
    """One identity folder and its image files (POSIX paths relative to the root, sorted)."""

    name: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class DatasetScan:
    """The identities found under a root, in name order, and what was left out."""

    root: Path
    identities: tuple[ScannedIdentity, ...]
    ignored_files: int
    skipped_identities: int  # folders below --min-images or beyond --limit-identities

    @property
    def image_count(self) -> int:
        return sum(len(identity.files) for identity in self.identities)


@dataclass(frozen=True)
class SplitRule:
    """A share of the identities for one split, optionally only those with ≥ `min_images`."""

    split: str
    fraction: float
    min_images: int = 1


def is_image_name(path: Path) -> bool:
    """A visible file whose suffix names a supported image format (any case)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def dataset_scan(
    root: Path, *, limit_identities: int | None = None, min_images: int = 1
) -> DatasetScan:
    """List identity folders (sorted by name) and their images; raise on a bad layout."""
    root = Path(root)
    hint = "Pass the folder that holds one sub-folder per identity, e.g. …/lfw."
    if not root.exists():
        raise DatasetLayoutError(f"Dataset folder {root} does not exist. {hint}")
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{root} is a file, not a folder. {hint} Unpack archives first (e.g. tar xf lfw.tgz)."
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and is_image_name(p)]
    if not folders:
        detail = (
            f" It holds {len(loose)} image(s) directly: move each identity's images into "
            "a sub-folder named after the identity."
            if loose
            else ""
        )
        raise DatasetLayoutError(f"{root} has no identity folders.{detail} {hint}")

    identities: list[ScannedIdentity] = []
    ignored = len(loose)
    skipped = 0
    for folder in folders:
        entries = sorted(folder.iterdir())
        files = tuple(
            f"{folder.name}/{p.name}" for p in entries if p.is_file() and is_image_name(p)
        )
        ignored += len(entries) - len(files)
        if not files:
            continue
        if len(files) < min_images or (
            limit_identities is not None and len(identities) >= limit_identities
        ):
            skipped += 1
            continue
        identities.append(ScannedIdentity(name=folder.name, files=files))
    if not identities:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        if skipped:
            raise DatasetLayoutError(
                f"No identity folder under {root} has at least {min_images} image(s); "
                "lower --min-images."
            )
        raise DatasetLayoutError(
            f"The {len(folders)} folder(s) under {root} hold no images ({suffixes}). {hint}"
        )
    return DatasetScan(
        root=root,
        identities=tuple(identities),
        ignored_files=ignored,
        skipped_identities=skipped,
    )


def identity_photos(root: Path) -> dict[str, list[Path]]:
    """Identity name → the paths of its images, both sorted (``dataset_scan``'s rules)."""
    scan = dataset_scan(root)
    return {i.name: [scan.root / f for f in i.files] for i in scan.identities}


def splits_parse(text: str, *, allowed: list[str] | None = None) -> tuple[SplitRule, ...]:
    """Parse ``train=0.5,target=0.2@10,gallery=0.3`` (``@N``: only identities with ≥ N images)."""
    rules = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = SPLIT_RE.match(part)
        if not match:
            raise ValueError(
                f"Cannot read split {part!r}: write NAME=FRACTION or NAME=FRACTION@MIN_IMAGES, "
                f"e.g. {DEFAULT_SPLITS}."
            )
        name = match["name"]
        if allowed is not None and name not in allowed:
            raise ValueError(f"Unknown split {name!r}: use {', '.join(allowed)}.")
        rules.append(SplitRule(name, float(match["fraction"]), int(match["min"] or 1)))
    names = [r.split for r in rules]
    if not rules or len(set(names)) != len(names):
        raise ValueError(f"Give each split once, e.g. {DEFAULT_SPLITS}.")
    total = sum(r.fraction for r in rules)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"Split fractions must add up to 1 (they add up to {total:g}).")
    return tuple(rules)


def _largest_remainder(fractions: list[float], total: int) -> list[int]:
    raw = [f * total for f in fractions]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def splits_assign(
    image_counts: dict[str, int], rules: tuple[SplitRule, ...], *, seed: int
) -> dict[str, str]:
    """Assign every identity to one split, deterministically from `seed`.

    Identities are ordered by SHA-256 of ``"{seed}:{name}"`` (independent of scan order);
    each split gets its largest-remainder share of the identities. Splits with a minimum
    image count fill first, from the eligible identities in that order; if too few are
    eligible they get all of them and the others share what remains by their fractions.
    """
    order = sorted(image_counts, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).digest())
    quotas = dict(
        zip(
            [r.split for r in rules],
            _largest_remainder([r.fraction for r in rules], len(order)),
            strict=True,
        )
    )
    assignment: dict[str, str] = {}
    constrained = sorted((r for r in rules if r.min_images > 1), key=lambda r: -r.min_images)
    for rule in constrained:
        eligible = [n for n in order if n not in assignment and image_counts[n] >= rule.min_images]
        for name in eligible[: quotas[rule.split]]:
            assignment[name] = rule.split
    remaining = [n for n in order if n not in assignment]
    free = [r for r in rules if r.min_images <= 1]
    if not free:
        free = list(rules)  # every split is constrained: leftovers go by fraction anyway
    counts = _largest_remainder(
        [r.fraction / sum(f.fraction for f in free) for r in free], len(remaining)
    )
    start = 0
    for rule, count in zip(free, counts, strict=True):
        for name in remaining[start : start + count]:
            assignment[name] = rule.split
        start += count
    return assignment
