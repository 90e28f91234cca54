"""Small file helpers shared by the services: PNG encoding, storage reads and deletes."""

from __future__ import annotations

import io
import logging
from typing import Any

from django.core.files.storage import default_storage
from PIL import Image

from reconstruction.faces import alignment
from reconstruction.models import Reconstruction

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
