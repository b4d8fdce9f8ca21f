"""The SynthFace skin layer: colour, texture and identity shading, drawn coarse and warped.

Shading is drawn as hard shapes on a coarse grid (``_STEP`` face-frame px per cell), blurred
once and warped once: cheaper than soft shapes at full resolution.
"""
import cv2
import numpy as np

from .drawing import ONE, SHIFT, fixed
from .layout import CX, FaceLayout

__all__ = ['skin_image']

#: Face-frame px per cell of the coarse grid, its size in cells and its top-left corner.
_STEP, _SIZE, _ORIGIN = 2, 64, -8.0


def _cells(pts) -> np.ndarray:
    """Face-frame points as fixed-point vertices of the coarse grid."""
    return fixed((np.asarray(pts, np.float64) - _ORIGIN) / _STEP)


def _line(field: np.ndarray, pts, value: float, width: float) -> None:
    """Set ``field`` to ``value`` along the face-frame polyline ``pts`` (``width`` px wide)."""
    cv2.polylines(field, [_cells(pts)], False, float(value),
                  max(1, int(round(width / _STEP))), cv2.LINE_8, SHIFT)


def _ellipse(field: np.ndarray, centre, axes, value: float) -> None:
    """Set ``field`` to ``value`` inside the axis-aligned face-frame ellipse."""
    cv2.ellipse(field, tuple(_cells([centre])[0]),
                (max(1, int(axes[0] / _STEP * ONE)), max(1, int(axes[1] / _STEP * ONE))),
                0, 0, 360, float(value), -1, cv2.LINE_8, SHIFT)


def _shade(face: FaceLayout, outline: np.ndarray) -> np.ndarray:
    """Multiplicative shading of the identity's 3-D shape: ``[_SIZE, _SIZE]`` float32."""
    t, nu = face.t, face.nu
    shade = np.ones((_SIZE, _SIZE), np.float32)
    # 3-D roundness: the outline darkens, the forehead and cheekbones catch light.
    _line(shade, np.vstack([outline, outline[:1]]), 0.84 - 0.05 * t('jaw_shadow'), 5)
    _ellipse(shade, (CX, 30), (18, 8), 1.06)
    nose, mouth = face.nose, face.mouth_c
    depth = 0.06 + 0.025 * t('nasolabial_depth') + 0.04 * nu.smile
    for side, eye in zip((-1, 1), face.eyes):
        _ellipse(shade, (eye[0] + side * 8, eye[1] + 12), (8, 4), 1.05 + 0.02 * nu.smile)
        _ellipse(shade, (eye[0], eye[1] + 5), (6, 2.5), 0.93 - 0.03 * t('under_eye_shadow'))
        wing = nose + [side * 9, -1]
        corner = mouth + [side * (face.mouth_hw + 2), 1 - face.corner_lift]
        _line(shade, np.array([wing, wing + [side * 3, 6], corner]), 1 - depth, 2.5)
        bridge = np.array([[CX + side * 3.5, 56.0], [CX + side * 4.5, nose[1] - 6]])
        _line(shade, bridge + 0.7 * face.turn, 0.94 - 0.02 * t('bridge_width'), 2.5)
    # Nose: bright ridge and tip, shadow below; lower-lip shadow; chin cleft.
    _line(shade, np.array([[CX, 56.0], [CX, nose[1] - 3]]) + 0.8 * face.turn, 1.06, 2)
    tip = 2.5 * (1 + 0.12 * t('nose_tip_size'))
    _ellipse(shade, nose + [0, -1.5], (tip, tip * 0.8), 1.09)
    _ellipse(shade, nose + [0, 4.5], (6, 1.6), 0.86)
    _ellipse(shade, (mouth[0], mouth[1] + 7 + 2 * nu.mouth_open), (6, 1.5), 0.9)
    cleft = t('chin_cleft') - 0.3
    if cleft > 0:
        _ellipse(shade, (CX, face.chin_y - 5), (0.8, 2.5), 1 - 0.06 * cleft)
    return cv2.GaussianBlur(shade, (0, 0), 1.1)


def _tint(face: FaceLayout, outline: np.ndarray) -> np.ndarray:
    """Colour field ``[_SIZE, _SIZE]`` float32: + = blush (redder), - = stubble (darker, cooler)."""
    t, nose = face.t, face.nose
    tint = np.zeros((_SIZE, _SIZE), np.float32)
    amount = max(0.0, 0.25 + 0.12 * t('cheek_blush') + 0.1 * face.nu.smile)
    for side in (-1, 1):
        _ellipse(tint, (CX + side * 21, nose[1] + 2), (8, 5), amount)
    stubble = 0.12 * (t('stubble') - 0.5)
    if stubble > 0:
        jaw = outline[outline[:, 1] > nose[1] + 8]
        region = np.vstack([[nose + [-12, 6], nose + [12, 6]], jaw])
        cv2.fillPoly(tint, [cv2.convexHull(_cells(region))], -stubble, cv2.LINE_8, SHIFT)
    return cv2.GaussianBlur(tint, (0, 0), 2.0)


def skin_image(face: FaceLayout, outline: np.ndarray) -> np.ndarray:
    """The face's skin (colour, texture, identity shading), warped to the output frame.

    Args:
        face (FaceLayout): the image's layout.
        outline (np.ndarray): ``[K, 2]`` face outline in the face frame.

    Returns:
        np.ndarray: ``[S, S, 3]`` float32 BGR, defined over the whole frame (the caller
        blends it inside the outline).
    """
    shade, tint = _shade(face, outline), _tint(face, outline)
    texture = cv2.resize(face.traits.texture.astype(np.float32), (_SIZE, _SIZE),
                         interpolation=cv2.INTER_CUBIC)
    gain = (1 + np.float32(0.03 * (1 + 0.35 * face.t('skin_blotchiness'))) * texture) * shade
    red = np.maximum(tint, 0)
    dark = 1 - np.maximum(-tint, 0)
    b, g, r = (float(c) for c in face.skin)
    field_img = cv2.merge([gain * b * dark - 18 * red, gain * g * dark - 16 * red,
                           gain * r * dark + 14 * red])
    # Output pixel = lin @ face-frame point + off; face-frame point = origin + step * cell.
    full = np.hstack([face.lin * _STEP, (face.lin @ [_ORIGIN, _ORIGIN] + face.off)[:, None]])
    return cv2.warpAffine(field_img, full, (face.size, face.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
