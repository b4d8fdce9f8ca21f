"""The facial features SynthFace draws over the skin: spots, brows, eyes, nose and mouth.

Each ``draw_*`` function draws in place on a uint8 BGR ``[S, S, 3]`` image, with anti-aliased
cv2 shapes at the output resolution, from a :class:`~.layout.FaceLayout`.
"""
from typing import NamedTuple, Tuple

import cv2
import numpy as np

from .drawing import ONE, SHIFT, blend, colour, draw_polyline, fill_poly, fixed_point, mix
from .layout import CX, FaceLayout

__all__ = ['draw_spots', 'draw_brows', 'draw_eyes', 'draw_nose', 'draw_mouth']

#: Iris colours along the hue axis (BGR): dark brown, brown, hazel, green-grey, grey-blue.
_IRIS_PATH = np.array([[22, 38, 62], [35, 62, 98], [50, 95, 112], [92, 118, 96],
                       [140, 118, 88]], dtype=np.float64)
# Fixed sample positions of the drawn curves.
_U_MOUTH = np.linspace(-1, 1, 13)
_DOME = np.sqrt(np.clip(1 - _U_MOUTH**2, 0, None))
_BOW = np.exp(-(_U_MOUTH / 0.2)**2)
_TEETH = np.abs(_U_MOUTH) < 0.7
_U_BROW = np.linspace(0, 1, 9)
_A_EYE = np.linspace(0, np.pi, 9)
_COS_EYE, _SIN_EYE = np.cos(_A_EYE), np.sin(_A_EYE)


def draw_spots(img: np.ndarray, face: FaceLayout) -> None:
    """Freckles (cheeks and nose, faint) and marks (lower face only, faint)."""
    t, freckles = face.t, face.traits.freckles
    count = int(round(len(freckles) * min(1.0, max(0.0, (t('freckle_density') - 0.6) / 1.6))))
    if count:
        f = freckles[:count]
        pts = np.stack([CX + (2 * f[:, 0] - 1) * 26, 58 + f[:, 1] * (face.nose[1] + 6 - 58)], 1)
        radius = int(0.55 * face.scale_px * ONE)
        spot = colour(face.skin * 0.86)
        for p in face.to_img(pts):
            cv2.circle(img, fixed_point(p), radius, spot, -1, cv2.LINE_AA, SHIFT)
    for k, (u, v) in enumerate(face.traits.marks):
        strength = min(1.5, t(f'mark_strength_{k + 1}') - 0.8)
        if strength <= 0:
            continue
        top = face.nose[1] + 6
        y = top + v * (face.chin_y - 8 - top)
        x = CX + (u * 2 - 1) * 0.75 * face.jaw_hw
        # A mark never sits on the lips: it moves out beside the mouth corner.
        if abs(y - face.mouth_c[1]) < 7 and abs(x - CX) < face.mouth_hw + 3:
            x = CX + (1 if x >= CX else -1) * (face.mouth_hw + 4)
        p = face.to_img(np.array([[x, y]]))[0]
        cv2.circle(img, fixed_point(p), int((0.6 + 0.35 * strength) * face.scale_px * ONE),
                   colour(face.skin * (0.86 - 0.08 * strength)), -1, cv2.LINE_AA, SHIFT)


def draw_brows(img: np.ndarray, face: FaceLayout) -> None:
    """Both eyebrows: tapering bands above the eyes, raised and arched by expression."""
    t, nu = face.t, face.nu
    length = 16.0 * (1 + 0.07 * t('brow_length'))
    arch = 1.6 + 0.6 * t('brow_arch') + 0.5 * nu.brow_raise
    thick = 2.4 * (1 + 0.15 * t('brow_thickness'))
    slope = 0.9 * t('brow_slope')
    darkness = min(0.8, max(0.2, 0.5 + 0.1 * t('brow_darkness')))
    brow = colour(mix(face.skin, [28, 32, 40], darkness))
    u = _U_BROW
    rise = (face.brow_gap + arch * (1 - ((u - 0.6) / 0.6)**2) + slope * (u - 0.4) -
            0.8 * nu.brow_raise * (1 - u))
    half = 0.5 * thick * (1.15 - 0.6 * u)
    for side, eye in zip((-1, 1), face.eyes):
        # side -1 is the image-left eye; a brow runs from its inner end outwards.
        x = eye[0] - side * 0.38 * length + side * u * length + 0.1 * face.turn[0]
        y = eye[1] - rise + 0.1 * face.turn[1]
        poly = np.vstack([np.stack([x, y - half], 1), np.stack([x[::-1], (y + half)[::-1]], 1)])
        fill_poly(img, face.to_img(poly), brow)


class _EyeStyle(NamedTuple):
    """What both eyes of one image share: lid sizes (face frame), gaze and colours."""
    half_w: float
    upper_h: float
    lower_h: float
    tilt: float
    gaze: np.ndarray
    iris: np.ndarray
    iris_r: int
    lash: Tuple[float, float, float]
    crease: Tuple[float, float, float]
    sclera: Tuple[float, float, float]
    lid_width: int


def _eye_style(face: FaceLayout) -> _EyeStyle:
    """The eye sizes, gaze and colours of one image."""
    t, nu = face.t, face.nu
    half_w = 6.3 * (1 + 0.06 * t('eye_width'))
    upper_h = 3.1 * (1 + 0.12 * t('eye_openness')) * (1 - 0.25 * nu.smile)
    hue = min(len(_IRIS_PATH) - 1.001, max(0.0, 1.2 + 0.9 * t('iris_hue')))
    lo = int(hue)
    iris = mix(_IRIS_PATH[lo], _IRIS_PATH[lo + 1], hue - lo)
    return _EyeStyle(
        half_w=half_w,
        upper_h=upper_h,
        lower_h=1.8 * (1 + 0.1 * t('eye_openness')) * (1 - 0.2 * nu.smile),
        tilt=np.deg2rad(4.0 * t('eye_tilt')),
        gaze=np.array([nu.gaze[0] * half_w * 0.4, nu.gaze[1] * upper_h * 0.3]),
        iris=iris * (1 - 0.12 * t('iris_darkness')),
        iris_r=int(3.0 * (1 + 0.06 * t('iris_size')) * face.scale_px * ONE),
        lash=colour(mix(face.skin, [20, 22, 28], 0.75)),
        crease=colour(face.skin * 0.8),
        sclera=colour(mix([205, 212, 222], face.skin, 0.15)),
        lid_width=max(1, int(round(face.scale_px))))


def _lids(style: _EyeStyle, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid curves about the eye centre (face frame), ``[9, 2]`` each.

    Outer corners lift with tilt; the upper lid peaks slightly inward of the centre.
    """
    ang = -side * style.tilt
    rot = np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
    upper = np.stack([style.half_w * _COS_EYE - side * 0.6 * _SIN_EYE,
                      -style.upper_h * _SIN_EYE], 1) @ rot
    lower = np.stack([-style.half_w * _COS_EYE, style.lower_h * _SIN_EYE], 1) @ rot
    return upper, lower


def _draw_eyeball(img: np.ndarray, outline: np.ndarray, iris_c: np.ndarray,
                  style: _EyeStyle) -> None:
    """Sclera, iris, pupil and catch-light inside the lid ``outline`` (output pixels)."""
    x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + 3, img.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    # Draw sclera and iris unclipped in a small box, then keep them inside the lids.
    roi = img[y0:y1, x0:x1]
    drawn = np.empty_like(roi)
    drawn[:] = style.sclera
    offset = np.array([x0, y0])
    ic, iris_r = fixed_point(iris_c - offset), style.iris_r
    cv2.circle(drawn, ic, iris_r, colour(style.iris), -1, cv2.LINE_AA, SHIFT)
    cv2.circle(drawn, ic, iris_r, colour(style.iris * 0.55), 1, cv2.LINE_AA, SHIFT)
    cv2.circle(drawn, ic, int(0.42 * iris_r), (18, 18, 22), -1, cv2.LINE_AA, SHIFT)
    glint = (ic[0] - int(0.3 * iris_r), ic[1] - int(0.35 * iris_r))
    cv2.circle(drawn, glint, int(0.22 * iris_r), (235, 240, 245), -1, cv2.LINE_AA, SHIFT)
    alpha = np.zeros(roi.shape[:2], np.uint8)
    fill_poly(alpha, outline - offset, 255)
    img[y0:y1, x0:x1] = blend(drawn, roi, alpha)


def draw_eyes(img: np.ndarray, face: FaceLayout) -> None:
    """Both eyes: eyeball clipped to the lids, lash line on the upper lid, lid crease."""
    style = _eye_style(face)
    for side, eye in zip((-1, 1), face.eyes):
        upper, lower = _lids(style, side)
        outline = face.to_img(np.vstack([upper, lower]) + eye)
        iris_c = face.to_img((eye + style.gaze)[None])[0]
        _draw_eyeball(img, outline, iris_c, style)
        draw_polyline(img, outline[:9], style.lash, style.lid_width)
        fold = face.to_img(upper[1:-1] + eye + [0, -2.4])
        draw_polyline(img, fold, style.crease, 1)


def draw_nose(img: np.ndarray, face: FaceLayout) -> None:
    """Nostrils and the alar creases beside them."""
    half_w = 8.0 * (1 + 0.07 * face.t('nose_width'))
    size = (1.0 + 0.15 * face.t('nostril_size')) * face.scale_px * ONE
    nostril = colour(face.skin * 0.42)
    alar = colour(face.skin * 0.72)
    axes = (int(1.7 * size), int(0.9 * size))
    for side in (-1, 1):
        c = face.to_img((face.nose + [side * 0.4 * half_w, 2.0])[None])[0]
        cv2.ellipse(img, fixed_point(c), axes, float(side * 20 + face.nu.roll), 0, 360,
                    nostril, -1, cv2.LINE_AA, SHIFT)
        wing = face.nose + np.array([[side * 0.8 * half_w, -3.5], [side * half_w, -0.5],
                                     [side * 0.85 * half_w, 2.0], [side * 0.55 * half_w, 2.8]])
        draw_polyline(img, face.to_img(wing), alar, 1)


def _band(face: FaceLayout, xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The region between two curves over ``xs`` (face frame), in output pixels."""
    pts = np.vstack([np.stack([xs, top], 1), np.stack([xs[::-1], bottom[::-1]], 1)])
    return face.to_img(pts)


def draw_mouth(img: np.ndarray, face: FaceLayout) -> None:
    """Lips, and the opening with teeth when the mouth is open (else a lip line)."""
    t, nu = face.t, face.nu
    cx, my = face.mouth_c
    u = _U_MOUTH
    # Lip line through the corners (the landmarks); its centre drops a little in a smile.
    line = my - face.corner_lift * u**2 + 0.4 * nu.smile * (1 - u**2)
    upper_t = 3.0 * (1 + 0.16 * t('upper_lip'))
    lower_t = 3.8 * (1 + 0.16 * t('lower_lip'))
    bow = 0.9 * (1 + 0.4 * t('cupid_bow'))
    gap = 4.5 * nu.mouth_open * _DOME
    top = line - upper_t * _DOME**0.7 + bow * _BOW
    bottom_line = line + gap
    bottom = bottom_line + lower_t * _DOME**0.8
    xs = cx + u * face.mouth_hw
    red = min(0.7, max(0.1, 0.4 + 0.12 * t('lip_redness')))
    lip = mix(face.skin, np.array([78, 68, 168]) * (1 - 0.15 * t('lip_darkness')), red)
    if nu.mouth_open > 0:
        fill_poly(img, _band(face, xs, line, bottom_line), (40, 32, 66))
        fill_poly(img, _band(face, xs, line, line + np.minimum(gap, 2.2) * _TEETH),
                  (196, 205, 212))
    fill_poly(img, _band(face, xs, top, line), colour(lip * 0.92))
    fill_poly(img, _band(face, xs, bottom_line, bottom), colour(lip * 1.05))
    if nu.mouth_open == 0:
        draw_polyline(img, face.to_img(np.stack([xs, line], 1)), colour(lip * 0.55), 1)
