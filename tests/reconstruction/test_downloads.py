"""Datasets fetched on demand: checksum first, safe extraction, reuse, and the demo's LFW."""

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from django.core.management import call_command

from reconstruction.faces import downloads
from reconstruction.faces.downloads import LFW, DownloadError, archive_fetch
from tests.factories import synthetic_jpeg


def write_tgz(path: Path, members: dict[str, bytes]) -> str:
    """A gzipped tar of ``members`` (name → bytes); returns its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_lfw_tgz(tmp_path: Path) -> tuple[Path, str]:
    """An lfw.tgz-shaped archive: lfw/<identity>/<identity>_NNNN.jpg, 12 people, 1–3 photos."""
    members = {
        f"lfw/Person_{i:02d}/Person_{i:02d}_{j + 1:04d}.jpg": synthetic_jpeg(
            100 * i + j, size=24
        ).read()
        for i in range(12)
        for j in range(1 + i % 3)
    }
    members["lfw/README.txt"] = b"not an identity"
    path = tmp_path / "lfw.tgz"
    return path, write_tgz(path, members)


def test_the_archive_is_verified_extracted_and_then_reused(tiny_lfw_tgz, tmp_path):
    path, digest = tiny_lfw_tgz
    cache = tmp_path / "cache"
    root = archive_fetch(LFW, cache_dir=cache, url=path.as_uri(), sha256=digest, progress=False)
    assert root == cache / "lfw" / "lfw"
    assert len([p for p in root.iterdir() if p.is_dir()]) == 12
    assert (root / "Person_02" / "Person_02_0003.jpg").is_file()
    assert not list((cache / "lfw").glob("tmp*"))  # the download and scratch are gone
    again = archive_fetch(LFW, cache_dir=cache, url="file:///nowhere/lfw.tgz", progress=False)
    assert again == root  # extracted once: the URL is not read again


def test_a_wrong_checksum_extracts_nothing(tiny_lfw_tgz, tmp_path):
    path, _ = tiny_lfw_tgz
    with pytest.raises(DownloadError, match=r"expected 055f7d9c.*nothing was extracted"):
        archive_fetch(LFW, cache_dir=tmp_path / "cache", url=path.as_uri(), progress=False)
    assert not (tmp_path / "cache" / "lfw" / "lfw").exists()


def test_an_unreachable_source_names_the_setting_to_use(tmp_path, monkeypatch):
    monkeypatch.setenv("FVR_LFW_URL", (tmp_path / "missing.tgz").as_uri())
    with pytest.raises(DownloadError, match=r"set FVR_LFW_URL=file:///path/to/lfw\.tgz"):
        archive_fetch(LFW, cache_dir=tmp_path / "cache", progress=False)


@pytest.mark.parametrize("name", ["../evil.jpg", "/etc/evil.jpg", "lfw/../../evil.jpg"])
def test_members_pointing_outside_the_archive_are_refused(tmp_path, name):
    path = tmp_path / "evil.tgz"
    digest = write_tgz(path, {"lfw/A/A_0001.jpg": b"x", name: b"x"})
    with pytest.raises(DownloadError, match="points outside the archive"):
        archive_fetch(LFW, cache_dir=tmp_path / "c", url=path.as_uri(), sha256=digest)
    assert not (tmp_path / "evil.jpg").exists()
    assert not (tmp_path / "c" / "lfw" / "lfw").exists()


@pytest.mark.django_db
def test_the_demo_without_photos_fetches_lfw_once(tiny_lfw_tgz, tmp_path, settings, monkeypatch):
    path, digest = tiny_lfw_tgz
    settings.FVR_FACE_DATA = ""
    settings.FVR_DATA_CACHE = tmp_path / "data"
    # The published archive's checksum stands in for the real one (no network here).
    monkeypatch.setattr(downloads, "LFW", dataclasses.replace(LFW, sha256=digest))
    monkeypatch.setenv("FVR_LFW_URL", path.as_uri())
    out = io.StringIO()
    call_command("demo", "--photos-only", "--per-method", "2", stdout=out)
    assert "No --faces or FVR_FACE_DATA: using LFW" in out.getvalue()
    assert f"from the photos in {tmp_path / 'data' / 'lfw' / 'lfw'}" in out.getvalue()
