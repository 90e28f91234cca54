"""Public face datasets fetched on demand: download once, verify the SHA-256, extract safely.

LFW (G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, "Labeled Faces in the Wild",
UMass Amherst TR 07-49, 2007): the original unaligned ``lfw.tgz`` (13,233 photos of 5,749
people, one folder per identity), from the figshare mirror scikit-learn's ``fetch_lfw_people``
uses since the UMass host went offline; 180,566,744 bytes, SHA-256 below. The photos remain the
copyright of their owners and are distributed by the LFW authors for research.

Standard library only (the survey's demo command uses it without importing torch). A mirror or
a local copy can be named with ``FVR_LFW_URL`` (any URL urllib opens, ``file://`` included); the
checksum is verified whatever the source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A dataset could not be fetched or failed its checksum; the message says what to do."""


@dataclass(frozen=True)
class RemoteArchive:
    """A .tgz of one identity-per-folder dataset and where its photos sit inside it."""

    name: str
    url: str
    sha256: str
    size: int
    folder: str  # the archive's top folder holding one sub-folder per identity
    url_setting: str  # environment variable naming a mirror or a local copy


LFW = RemoteArchive(
    name="lfw",
    url="https://ndownloader.figshare.com/files/5976018",
    sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
    size=180_566_744,
    folder="lfw",
    url_setting="FVR_LFW_URL",
)


def _copy(source: BinaryIO, target: BinaryIO, *, total: int, label: str, progress: bool) -> str:
    """Copy a stream, hashing it; a progress line on stderr when asked."""
    digest = hashlib.sha256()
    done = 0
    while chunk := source.read(CHUNK):
        target.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress and total:
            sys.stderr.write(f"\r{label}: {done / 1e6:6.1f} / {total / 1e6:.1f} MB")
    if progress and total:
        sys.stderr.write("\n")
    return digest.hexdigest()


def _safe_members(archive: tarfile.TarFile, folder: str) -> list[tarfile.TarInfo]:
    """The archive's regular files and folders under ``folder``; anything else is refused."""
    members = []
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise DownloadError(f"archive member {member.name!r} points outside the archive")
        if not (member.isfile() or member.isdir()):
            continue  # links and devices are never extracted
        if path.parts and path.parts[0] == folder:
            members.append(member)
    return members


def archive_fetch(
    archive: RemoteArchive,
    *,
    cache_dir: Path,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """The extracted dataset folder under ``cache_dir``, downloading and verifying it first.

    Idempotent: an extracted folder is reused. The download goes to a temporary file and is
    extracted only after its SHA-256 matches; extraction happens in a scratch folder that is
    renamed into place, so an interrupted run leaves nothing half-made.
    """
    final = cache_dir / archive.name / archive.folder
    if final.is_dir() and any(final.iterdir()):
        return final
    source_url = url or os.environ.get(archive.url_setting) or archive.url
    expected = sha256 or archive.sha256
    (cache_dir / archive.name).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir / archive.name) as scratch:
        tarball = Path(scratch) / f"{archive.name}.tgz"
        try:
            # Any scheme urllib opens is allowed on purpose (file:// for local copies); the
            # SHA-256 below decides whether the bytes are used.
            with urllib.request.urlopen(source_url, timeout=60) as response:  # nosec B310
                total = int(response.headers.get("Content-Length") or archive.size)
                with tarball.open("wb") as handle:
                    actual = _copy(
                        response, handle, total=total, label=archive.name, progress=progress
                    )
        except (OSError, ValueError) as exc:
            raise DownloadError(
                f"could not download {archive.name} from {source_url}: {exc}. Download it "
                f"yourself and set {archive.url_setting}=file:///path/to/{archive.name}.tgz, "
                "or point --faces / FVR_FACE_DATA at an identity-per-folder photo folder."
            ) from exc
        if actual != expected:
            raise DownloadError(
                f"{archive.name} from {source_url} has SHA-256 {actual}, expected {expected}: "
                "the file is damaged or not the published archive; nothing was extracted."
            )
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(tarball, "r:gz") as tar:
            members = _safe_members(tar, archive.folder)
            if not members:
                raise DownloadError(f"{archive.name} archive has no {archive.folder}/ folder")
            tar.extractall(unpacked, members=members, filter="data")
        shutil.move(str(unpacked / archive.folder), final)
    return final
