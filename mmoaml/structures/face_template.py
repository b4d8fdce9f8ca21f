"""The 112x112 ArcFace alignment template and the face-region prior derived from it.

Every aligned face in mmoaml is a 112x112 crop warped to the standard ArcFace 5-point template
(insightface ``face_align.py``; the 96x112 SphereFace points shifted by +8 px in x). Occluders are
placed from these points, so no landmark detector is needed in training.
"""
from functools import lru_cache
from typing import Tuple

import numpy as np

#: (x, y) of left eye, right eye, nose tip, left and right mouth corners in a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]],
    dtype=np.float32)

LEFT_EYE, RIGHT_EYE, NOSE, LEFT_MOUTH, RIGHT_MOUTH = range(5)


def template_points(size: Tuple[int, int] = (112, 112)) -> np.ndarray:
    """Template points scaled to an ``(H, W)`` crop; returns ``[5, 2]`` float32 (x, y)."""
    h, w = size
    return ARCFACE_TEMPLATE_112 * np.array([w / 112.0, h / 112.0], dtype=np.float32)


def face_region_prior(size: Tuple[int, int] = (112, 112)) -> np.ndarray:
    """Binary face-region prior of an aligned crop: ``[H, W]`` float32, 1 = face, 0 = not face.

    An ellipse fitted to the template: centred between the eyes horizontally and a little below
    the nose vertically; half-width 1.15 interocular distances (reaches the cheeks' outline);
    half-height 1.2 eye-to-mouth distances (from the hairline to below the chin). Used wherever a
    data set has no face-parsing mask, so that background and the crop's border count as not
    visible (docs/architecture.md#visibility-maps). Computed once per size; every call returns a
    fresh
    copy that the caller may modify.
    """
    return _face_region_prior(int(size[0]), int(size[1])).copy()


@lru_cache(maxsize=16)
def _face_region_prior(h: int, w: int) -> np.ndarray:
    pts = template_points((h, w))
    eyes = pts[[LEFT_EYE, RIGHT_EYE]].mean(0)
    mouth = pts[[LEFT_MOUTH, RIGHT_MOUTH]].mean(0)
    interocular = float(pts[RIGHT_EYE, 0] - pts[LEFT_EYE, 0])
    eye_mouth = float(mouth[1] - eyes[1])
    cx = float(eyes[0])
    cy = float(pts[NOSE, 1]) - 0.2 * eye_mouth
    ax, ay = 1.15 * interocular, 1.2 * eye_mouth
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    inside = ((xs - cx) / ax)**2 + ((ys - cy) / ay)**2 <= 1.0
    prior = inside.astype(np.float32)
    prior.flags.writeable = False
    return prior
