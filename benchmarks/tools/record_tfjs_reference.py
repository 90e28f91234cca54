"""Record TensorFlow.js reference outputs for tests/reconstruction/data/tfjs_reference.json.

Usage (once, by a developer; needs node, npm and the face photos):

    mkdir -p /tmp/tfjsref && (cd /tmp/tfjsref && npm init -y && npm install @tensorflow/tfjs@4)
    FVR_FACE_DATA=/work/shared/data TFJS_DIR=/tmp/tfjsref \\
        python -m benchmarks.tools.record_tfjs_reference

For each model, every photo in ``PHOTOS`` is decoded with Pillow to RGB, the central
``size``×``size`` window of the 250×250 LFW photo is cut (no resampling), turned into the
graph's float32 NHWC input by the recognizer's ``model_input`` (faceres: BGR minus the VGG
means; mobileface: RGB in [0, 255]) and fed as one batch to ``record_tfjs_reference.mjs``,
which runs the model with @tensorflow/tfjs's CPU backend.
Only the output vectors and the photos' relative paths are written; no pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from reconstruction.model_store import TFJS_MODELS, tfjs_model_path
from reconstruction.recognizers.registry import FACERES, MOBILEFACE

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "reconstruction" / "data" / "tfjs_reference.json"
PHOTOS = (
    "lfw/Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "lfw/Abdullah_Gul/Abdullah_Gul_0002.jpg",
    "lfw/Adrien_Brody/Adrien_Brody_0001.jpg",
)
PREPROCESSING = (
    "Pillow decode to RGB uint8; central size x size window of the photo "
    "(left = top = (250 - size) // 2, no resampling); then TfjsRecognizerConfig.model_input "
    "(see each model's model_input); float32 NHWC, batch of 3"
)


def central_crop(path: Path, size: int) -> np.ndarray:
    """The central size×size window of a photo as uint8 RGB (H, W, 3)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    top = (pixels.shape[0] - size) // 2
    left = (pixels.shape[1] - size) // 2
    return pixels[top : top + size, left : left + size]


def main() -> None:
    """Prepare inputs, run the node recorder and write the reference JSON."""
    data = Path(os.environ["FVR_FACE_DATA"])
    models = {config.name: config for config in (FACERES, MOBILEFACE)}
    with tempfile.TemporaryDirectory() as scratch:
        job = {"models": []}
        for name, config in models.items():
            batch = np.stack([central_crop(data / p, config.input_size) for p in PHOTOS])
            raw = Path(scratch) / f"{name}.f32"
            raw.write_bytes(config.model_input(batch).astype("<f4").tobytes())
            job["models"].append(
                {
                    "name": name,
                    "model_json": str(tfjs_model_path(config.model)),
                    "output_node": config.output_node,
                    "inputs": [{"file": str(raw), "shape": list(batch.shape)}],
                }
            )
        job_path = Path(scratch) / "job.json"
        job_path.write_text(json.dumps(job))
        out_path = Path(scratch) / "out.json"
        script = Path(__file__).with_suffix(".mjs")
        subprocess.run(["node", str(script), str(job_path), str(out_path)], check=True)
        result = json.loads(out_path.read_text())
    reference = {
        "tfjs_version": result["tfjs_version"],
        "backend": result["backend"],
        "photos": list(PHOTOS),
        "preprocessing": PREPROCESSING,
        "models": {
            name: {
                "package": f"{TFJS_MODELS[config.model].package}@"
                f"{TFJS_MODELS[config.model].version}",
                "weights_sha256": TFJS_MODELS[config.model].weights_sha256,
                "input_size": config.input_size,
                "model_input": f"channels {config.channel_order}, [0, 255] minus "
                f"{list(config.input_mean)}",
                "output_node": config.output_node,
                "outputs": [
                    [float(f"{v:.7g}") for v in row] for row in result["models"][name]["outputs"]
                ],
            }
            for name, config in models.items()
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
