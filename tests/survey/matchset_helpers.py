"""Match-set manifests (manage.py import_matchsets' input) written with synthetic images."""

import json
from pathlib import Path

from tests.factories import synthetic_jpeg

STUDY = {
    "slug": "pilot",
    "title": "Pilot study",
    "k": 5,
    "questions_per_method": 1,
    "completion_code": "C1OK2345",
    "failed_attention_code": "C9FAIL99",
    "no_consent_code": "C0NOCON0",
}


def _write_image(folder: Path, relative: str, seed: int) -> str:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(synthetic_jpeg(seed, size=40).read())
    return relative


def manifest_folder(folder: Path, *, count: int = 3, study: object = None) -> dict:
    """Write `count` match sets' synthetic images under `folder`; return the manifest dict."""
    items = []
    for i in range(count):
        key = f"ms-{i + 1:03d}"
        candidates = [
            {
                "rank": rank,
                "identity": f"Person {i}" if rank == 2 else f"Other {i}-{rank}",
                "image": _write_image(folder, f"candidates/{key}-{rank}.jpg", 100 * i + rank),
                "is_true": rank == 2,
                "score": 0.9 - rank / 10,
            }
            for rank in range(1, 6)
        ]
        items.append(
            {
                "key": key,
                "method": ["eigenfaces", "nbnet", "naive", "vec2face"][i % 4],
                "query_image": _write_image(folder, f"queries/{key}.png", 100 * i),
                "target_identity": f"Person {i}",
                "provenance": {"recognizer": "dlib-resnet", "seed": i},
                "candidates": candidates,
            }
        )
    return {"study": STUDY if study is None else study, "match_sets": items}


def write(folder: Path, data: dict) -> Path:
    (folder / "manifest.json").write_text(json.dumps(data, indent=2))
    return folder
