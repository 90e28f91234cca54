"""Fixtures shared by the reconstruction tests: the mobileface model, a tiny LFW import, and
the browser fixtures (tests/browser_fixtures.py) for the built study's browser test."""

import shutil
from pathlib import Path

import pytest

from reconstruction.services import dataset_import
from tests.browser_fixtures import (  # noqa: F401  (fixtures for the browser tests)
    browser,
    browser_context_args,
    context,
    live_server,
    page,
)

# Two identities with 3 photos (training) and two with 1 (targets).
TINY_LFW_IDENTITIES = {
    "Abdullah_Gul": 3,
    "Adrien_Brody": 3,
    "Alejandro_Toledo": 1,
    "Alvaro_Uribe": 1,
}


@pytest.fixture
def mobileface() -> None:
    """Skip (with the reason) when mobileface's model files cannot be obtained."""
    from reconstruction.model_store import ModelStoreError
    from reconstruction.recognizers.registry import get_recognizer

    try:
        get_recognizer("mobileface").network("cpu")
    except ModelStoreError as exc:
        pytest.skip(f"mobileface model files unavailable: {exc}")


@pytest.fixture
def tiny_lfw(face_data: Path, tmp_path: Path) -> str:
    """Import four LFW identities as dataset `tiny` (3-photo ones train, 1-photo ones target)."""
    root = tmp_path / "lfw-tiny"
    for name, count in TINY_LFW_IDENTITIES.items():
        (root / name).mkdir(parents=True)
        for path in sorted((face_data / "lfw" / name).glob("*.jpg"))[:count]:
            shutil.copy(path, root / name / path.name)
    # The @N rule fills first: identities with 3 photos go to train, the rest to target.
    dataset_import(name="tiny", path=root, splits="train=0.5@3,target=0.5", progress=False)
    return "tiny"
