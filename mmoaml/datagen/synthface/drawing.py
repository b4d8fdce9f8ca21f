"""Drawing helpers of the SynthFace renderer: cv2 fixed-point vertices, splines, colours."""
from typing import Tuple

import cv2
import numpy as np

from mmoaml.structures.alignment import similarity_transform

__all__ = [
    'SHIFT', 'ONE', 'fixed', 'fixed_point', 'fill_poly', 'draw_polyline', 'smooth_closed',
    'similarity', 'mix', 'colour', 'blend'
]

#: Fixed-point bits of the vertices handed to cv2 drawing (1/16 px).
SHIFT = 4
#: One pixel in fixed point.
ONE = 1 << SHIFT

# Catmull-Rom basis (tension 0.5) for 4 samples per segment, as a [4, 4] weight matrix.
_CR_T = np.linspace(0, 1, 4, endpoint=False)[:, None]
_CR_BASIS = 0.5 * np.hstack([
    -_CR_T**3 + 2 * _CR_T**2 - _CR_T, 3 * _CR_T**3 - 5 * _CR_T**2 + 2,
    -3 * _CR_T**3 + 4 * _CR_T**2 + _CR_T, _CR_T**3 - _CR_T**2
])


def fixed(points: np.ndarray) -> np.ndarray:
    """Float ``[K, 2]`` points as cv2 fixed-point vertices (use with :data:`SHIFT`)."""
    return np.round(points * ONE).astype(np.int32)


def fixed_point(point) -> Tuple[int, int]:
    """One float point as a cv2 fixed-point vertex."""
    return int(round(point[0] * ONE)), int(round(point[1] * ONE))


def fill_poly(img: np.ndarray, points: np.ndarray, colour) -> None:
    """Fill the anti-aliased polygon through float ``[K, 2]`` pixel ``points``, in place."""
    cv2.fillPoly(img, [fixed(points)], colour, cv2.LINE_AA, SHIFT)


def draw_polyline(img: np.ndarray, points: np.ndarray, colour, thickness: int) -> None:
    """Draw the anti-aliased open polyline through float ``[K, 2]`` pixel ``points``."""
    cv2.polylines(img, [fixed(points)], False, colour, thickness, cv2.LINE_AA, SHIFT)


def smooth_closed(points: np.ndarray) -> np.ndarray:
    """Closed Catmull-Rom spline through ``[K, 2]`` control points (4 samples per segment)."""
    idx = (np.arange(len(points))[:, None] + np.arange(-1, 3)[None, :]) % len(points)
    return np.einsum('sj,kjd->ksd', _CR_BASIS, points[idx]).reshape(-1, 2)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    :func:`mmoaml.structures.similarity_transform` (Umeyama), the fit that aligns photos for
    inference; the same model as the ``SimilarityTransform`` alignment of insightface's
    ``face_align``. It replaced a complex-number closed form of the same fit after renders of
    600 faces (seeds 0-2, 112 and 64 px) came out byte-identical.

    Returns:
        np.ndarray: ``[2, 3]`` affine matrix.
    """
    return similarity_transform(src, dst)


def mix(a, b, t: float) -> np.ndarray:
    """Linear interpolation ``a * (1 - t) + b * t`` of colours, as float64."""
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def colour(bgr) -> Tuple[float, float, float]:
    """A BGR colour as the float tuple cv2 drawing wants, clipped to [0, 255]."""
    return tuple(min(255.0, max(0.0, float(c))) for c in bgr)


def blend(top: np.ndarray, bottom: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``top`` over uint8 ``bottom`` with a uint8 alpha (255 = top); returns uint8."""
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    if top.dtype != np.uint8:
        top = np.clip(top, 0, 255).astype(np.uint8)
    return cv2.blendLinear(top, bottom, a, 1 - a)
