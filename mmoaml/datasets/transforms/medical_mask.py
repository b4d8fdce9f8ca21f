"""Synthetic medical / cloth / KN95 face masks placed from the 112x112 ArcFace template."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mmoaml.registry import TRANSFORMS
from mmoaml.structures.face_template import ARCFACE_TEMPLATE_112, LEFT_MOUTH, NOSE, RIGHT_MOUTH
from .occluder_base import (BGR, OccluderStyle, PosedOccluder, Size, draw_polylines, fill_layer,
                            fill_polygons, line_width, shade, template_scale, transform_points)

_ANCHORS = ARCFACE_TEMPLATE_112[[NOSE, LEFT_MOUTH, RIGHT_MOUTH]].astype(np.float64)
_CX = float(ARCFACE_TEMPLATE_112[[LEFT_MOUTH, RIGHT_MOUTH], 0].mean())
_MOUTH_WIDTH = float(_ANCHORS[2, 0] - _ANCHORS[1, 0])
#: Where every mask's top edge crosses the nose bridge, about halfway between the eye line (51.6)
#: and the nose tip (71.7) of the 112x112 template.
_BRIDGE = np.array([_ANCHORS[0, 0], 62.0])
_BRIDGE_TO_MOUTH = float(_ANCHORS[1:, 1].mean() - _BRIDGE[1])


def _mask_geometry(half_width: float, top, bottom,
                   details: List[np.ndarray]) -> Dict[str, object]:
    """Outline, detail strokes and ear loops of one mask shape in 112-template pixels.

    ``top(u)`` and ``bottom(u)`` give the upper and lower edge's y at ``u = |x - cx| /
    half_width`` in [0, 1].
    """
    u = np.linspace(-1.0, 1.0, 41)
    xs = _CX + u * half_width
    upper = np.stack([xs, top(np.abs(u))], 1)
    lower = np.stack([xs, bottom(np.abs(u))], 1)[::-1]
    outline = np.concatenate([upper, lower])
    y_up, y_low = float(top(1.0)), float(bottom(1.0))
    # Loops run from the mask's side corners to the ears at the crop's border (x ~ 3 px).
    loop = np.array([[0.0, y_up + 1], [9, y_up - 2.5], [16.5, y_up - 1], [19, y_up + 7],
                     [16, (y_up + y_low) / 2 + 8], [8, y_low - 1.5], [0, y_low - 2]])
    left = np.stack([_CX - half_width - loop[:, 0], loop[:, 1]], 1)
    right = np.stack([_CX + half_width + loop[:, 0], loop[:, 1]], 1)
    return dict(outline=outline, details=details, loops=[left, right])


def _pleat(y: float) -> np.ndarray:
    u = np.linspace(-0.97, 0.97, 15)
    return np.stack([_CX + 34 * u, y + 1.5 * (1 - u**2)], 1)


def _seam(top: float, bottom: float) -> np.ndarray:
    return np.array([[_CX, top], [_CX, bottom]])


# Canonical shapes (112x112 template pixels; eye line y = 51.6, nose tip y = 71.7, mouth corners
# y = 92.3). The top edge crosses the nose bridge at y = 62-62.5 and falls towards the cheeks
# (y = 67-69 under the eyes); the bottom reaches y = 113-115, under the chin at the crop's lower
# border. Details: surgical pleats, cloth and KN95 centre seams.
_SHAPES = {
    'surgical':
    _mask_geometry(34.0, lambda u: 62 + 11 * u**0.75, lambda u: 114 - 17 * u**2,
                   [_pleat(79), _pleat(87), _pleat(95)]),
    'cloth':
    _mask_geometry(33.0, lambda u: 62.5 + 10.5 * u**1.2, lambda u: 113 - 16 * u**2.5,
                   [_seam(62.5, 113)]),
    'kn95':
    _mask_geometry(35.0, lambda u: 62 + 11 * u, lambda u: 115 - 19 * u, [_seam(62, 115)]),
}


@TRANSFORMS.register_module()
class MedicalMaskOcclusion(PosedOccluder):
    """Draw a face mask (surgical, cloth or KN95) over the nose and mouth of an aligned face.

    The OAML report's medical-mask synthesis (docs/reference.md#medical-mask), rebuilt on
    the 112x112 ArcFace template (the predecessor placed it with the 96x112 template, about 8 px
    to the left, and left the nose bridge uncovered) and drawn procedurally instead of from a PNG:

    * Anchors: the template's nose tip and mouth corners, each moved by ``U(-3, 3)`` px in x and
      y (``point_jitter``). As in the report, the mask's width follows the moved mouth width and
      its top keeps a fixed offset above the moved nose tip; its height follows the moved
      mouth line (the report: height = nose-to-mouth distance x 4.0 x scale, width = mouth width
      x 4.0 x scale including strings, top 25 px above the nose).
    * Then scale ``U(0.95, 1.10)`` and rotation ``U(-7, 7)`` degrees about the bridge point, and
      a shift of ``U(-5, 5)`` px in x and y (report defaults).
    * Adapted extent: the report's box starts 25 px above the nose tip, i.e. at the eye line,
      because its PNG template has transparent margins. The drawn mask instead starts on the
      nose bridge (y = 62 at 112x112: 9.7 px above the nose tip, 10.4 px below the eye line),
      falls towards the cheeks and ends under the chin at the crop's border; the body is 2.3
      mouth widths wide and the ear loops take it to 3.6 mouth widths, the crop's sides. The
      height is stretched about the bridge point so that the top stays on the nose: the
      canonical mouth line lands on the moved one. Checked over every corner of the jitter
      ranges, no covered pixel comes within 3.3 px of an eye point (tests assert 3 px).

    Styles: ``surgical_*`` (pleated, ``blue``/``white``/``green``), ``cloth_*`` (contoured with a
    centre seam; ``black``/``grey``/``striped``/``dotted``/``checked``) and ``kn95_*`` (folded,
    ``white``/``black``). Held out by default (unseen in training, for test sets):
    ``surgical_green``, ``cloth_checked``, ``kn95_black``.

    Args:
        prob (float): probability of masking an image. Defaults to 0.5 (the report's default).
        styles, holdout_styles, colour_jitter, seed, random_colour_prob: see ``BaseOccluder``.
        point_jitter (float): anchor jitter in 112-template px. Defaults to 3.0 (report).
        shift (float): placement shift in 112-template px. Defaults to 5.0 (report).
        scale (tuple[float, float]): scale range. Defaults to (0.95, 1.10) (report).
        rotation (float): maximum rotation in degrees. Defaults to 7.0 (report).

    Examples:
        >>> pipeline = [dict(type='MedicalMaskOcclusion', prob=0.5),
        ...             dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
        >>> # a test set with held-out styles, the same mask per image in every run
        >>> test_occluder = dict(type='MedicalMaskOcclusion', prob=1.0, styles='test', seed=0)
    """

    STYLES = {
        'surgical_blue': OccluderStyle('surgical', ((215, 185, 130), (228, 205, 165)),
                                       ((170, 140, 90), )),
        'surgical_white': OccluderStyle('surgical', ((236, 236, 232), ), ((188, 188, 182), )),
        'surgical_green': OccluderStyle('surgical', ((175, 212, 150), ), ((125, 165, 100), )),
        'cloth_black': OccluderStyle('cloth', ((28, 28, 28), (40, 36, 34)), ((62, 62, 62), )),
        'cloth_grey': OccluderStyle('cloth', ((122, 120, 116), (92, 92, 98))),
        'cloth_striped': OccluderStyle('cloth', ((140, 70, 40), (40, 40, 140)),
                                       ((228, 228, 228), ), 'stripes'),
        'cloth_dotted': OccluderStyle('cloth', ((62, 40, 30), (82, 30, 100)),
                                      ((220, 220, 220), ), 'dots'),
        'cloth_checked': OccluderStyle('cloth', ((40, 40, 150), (40, 110, 40)),
                                       ((235, 235, 235), ), 'checks'),
        'kn95_white': OccluderStyle('kn95', ((238, 238, 238), ), ((198, 198, 198), )),
        'kn95_black': OccluderStyle('kn95', ((34, 34, 34), ), ((70, 70, 70), )),
    }
    HOLDOUT_STYLES = ('surgical_green', 'cloth_checked', 'kn95_black')

    ANCHORS = _ANCHORS

    def __init__(self,
                 prob: float = 0.5,
                 styles: Union[str, Sequence[str]] = 'train',
                 holdout_styles: Optional[Sequence[str]] = None,
                 point_jitter: float = 3.0,
                 shift: float = 5.0,
                 scale: Tuple[float, float] = (0.95, 1.10),
                 rotation: float = 7.0,
                 colour_jitter: int = 12,
                 seed: Optional[int] = None,
                 random_colour_prob: float = 0.0) -> None:
        super().__init__(point_jitter, shift, scale, rotation, prob=prob, styles=styles,
                         holdout_styles=holdout_styles, colour_jitter=colour_jitter, seed=seed,
                         random_colour_prob=random_colour_prob)

    def anchor_map(self, anchors: np.ndarray, size: Size) -> Tuple[np.ndarray, np.ndarray]:
        """The mask's frame from the moved nose tip and mouth corners; see ``PosedOccluder``."""
        nose, left, right = anchors
        # The report's frame: the top keeps a fixed offset above the nose tip (there 25 px, here
        # the bridge point 9.7 px above it) and the width follows the mouth width. The height is
        # stretched about the bridge so that the canonical mouth line lands on the moved one and
        # the top edge stays on the nose whatever the jitter.
        bridge = nose + (_BRIDGE - _ANCHORS[0]) * template_scale(size)
        sx = (right[0] - left[0]) / _MOUTH_WIDTH
        sy = ((left[1] + right[1]) / 2 - bridge[1]) / _BRIDGE_TO_MOUTH
        base = np.array([[sx, 0.0, bridge[0] - sx * _BRIDGE[0]],
                         [0.0, sy, bridge[1] - sy * _BRIDGE[1]]])
        return base, bridge

    def render(self, rng: np.random.Generator, style: OccluderStyle, size: Size, colour: BGR,
               accent: BGR) -> Tuple[np.ndarray, np.ndarray, dict]:
        """Draw one mask; see ``BaseOccluder.render``. ``params`` holds the placement draw."""
        matrix, params = self.place(rng, size)
        geometry = _SHAPES[style.shape]
        loops = [transform_points(p, matrix) for p in geometry['loops']]
        alpha = np.zeros(size, np.uint8)
        fill_polygons(alpha, [transform_points(geometry['outline'], matrix)], 255)
        draw_polylines(alpha, loops, 255, line_width(1.5, size))
        layer = shade(fill_layer(rng, size, colour, accent, style.pattern))
        draw_polylines(layer, [transform_points(p, matrix) for p in geometry['details']], accent,
                       line_width(1.0, size))
        return layer, alpha, params
