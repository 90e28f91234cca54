"""File helpers shared by the services: PNG encoding, stored crops, artifact files, deletes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from reconstruction.faces import alignment
from reconstruction.models import FaceImage, Reconstruction, ReconstructorArtifact

logger = logging.getLogger(__name__)


def png_bytes(pixels: object) -> bytes:
    """Encode a uint8 image array as PNG."""
    buffer = io.BytesIO()
    # Lossless: recognizers and reconstructors see exactly the warped pixels.
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def files_delete(names: list[str]) -> None:
    """Delete files from default storage, logging (not raising) on failure."""
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name)


def stored_bytes(field: Any) -> bytes:
    """The bytes of a stored file (a FieldFile)."""
    with field.open("rb") as handle:
        return handle.read()


def aligned_pixels_of(rows: list[Reconstruction]) -> Any:
    """The stored reconstruction images as one uint8 array (N, 112, 112, 3)."""
    import numpy as np

    out = []
    for row in rows:
        with row.image.open("rb") as handle:
            out.append(alignment.decode_rgb(handle.read()))
    return np.stack(out)


def stored_crops(
    images: list[FaceImage], crop: str, *, progress: bool = False, desc: str = ""
) -> Any:
    """The images' stored crops (``aligned`` or ``crop160``) as one uint8 (N, S, S, 3) array."""
    import numpy as np
    from tqdm import tqdm

    out = None
    for i, image in enumerate(tqdm(images, desc=desc, unit="img", disable=not progress)):
        with getattr(image, crop).open("rb") as handle:
            pixels = alignment.decode_rgb(handle.read())
        if out is None:
            out = np.empty((len(images), *pixels.shape), dtype=np.uint8)
        out[i] = pixels
    return out


def config_hash(config: dict, **provenance: str) -> str:
    """SHA-256 of a config and its provenance (JSON, sorted keys): the key of a run or result."""
    text = json.dumps({"config": config, **provenance}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_store(artifact: ReconstructorArtifact, name: str, data: bytes) -> None:
    """Write the artifact's file, then its row; a failed row write removes the file again."""
    artifact.file.save(name, ContentFile(data), save=False)
    try:
        with transaction.atomic():
            artifact.save()
    except BaseException:
        files_delete([artifact.file.name])
        raise
