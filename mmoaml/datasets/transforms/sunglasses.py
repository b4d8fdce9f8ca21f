"""Sunglasses: two opaque tinted lenses, a bridge and temple arms over the template's eyes."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mmoaml.registry import TRANSFORMS
from mmoaml.structures.face_template import ARCFACE_TEMPLATE_112, LEFT_EYE, RIGHT_EYE
from .occluder_base import (BGR, OccluderStyle, PosedOccluder, Size, draw_polylines, fill_polygons,
                            line_width, similarity_map, solid, transform_points)

_EYES = ARCFACE_TEMPLATE_112[[LEFT_EYE, RIGHT_EYE]].astype(np.float64)
_EYE_Y = float(_EYES[:, 1].mean())
_T = np.linspace(0.0, 2 * np.pi, 36, endpoint=False)


def _lens(shape: str, centre: np.ndarray, inward: float) -> np.ndarray:
    """One lens outline in 112-template px; ``inward`` = +1 if the nose is to the lens's right."""
    cos, sin = np.cos(_T), np.sin(_T)
    if shape == 'round':
        offsets = np.stack([12.0 * cos, 12.0 * sin], 1)
    elif shape == 'square':
        # A superellipse: straight sides with rounded corners.
        offsets = np.stack([14.0 * np.sign(cos) * np.abs(cos)**0.35,
                            10.5 * np.sign(sin) * np.abs(sin)**0.35], 1)
    else:
        # 'aviator': a flat top, a deep bottom that droops towards the nose.
        lower = np.clip(sin, 0.0, None)
        offsets = np.stack(
            [14.0 * cos + 2.5 * inward * lower, np.where(sin < 0, 10.0, 13.0) * sin], 1)
    return centre + np.array([0.0, 0.5]) + offsets


def _glasses(shape: str) -> dict:
    """Lenses, frame strokes (bridge, arms) of one frame shape in 112-template px."""
    lenses = [_lens(shape, _EYES[0], 1.0), _lens(shape, _EYES[1], -1.0)]
    inner_l, inner_r = lenses[0][:, 0].max(), lenses[1][:, 0].min()
    outer_l, outer_r = lenses[0][:, 0].min(), lenses[1][:, 0].max()
    bridge = np.array([[inner_l - 1, _EYE_Y - 3], [(inner_l + inner_r) / 2, _EYE_Y - 5],
                       [inner_r + 1, _EYE_Y - 3]])
    # Temple arms run from the outer lens edges to beyond the crop's sides, towards the ears.
    arms = [np.array([[outer_l + 1, _EYE_Y - 2], [-6.0, _EYE_Y + 2]]),
            np.array([[outer_r - 1, _EYE_Y - 2], [118.0, _EYE_Y + 2]])]
    return dict(lenses=lenses, bridge=bridge, arms=arms)


_SHAPES = {shape: _glasses(shape) for shape in ('round', 'square', 'aviator')}


@TRANSFORMS.register_module()
class SunglassesOcclusion(PosedOccluder):
    """Draw sunglasses over the eyes of an aligned face (an upper-face occluder).

    Placed from the 112x112 template's eye points: each eye point moves by ``U(-point_jitter,
    point_jitter)`` px, the frame follows the similarity through the moved eyes (head roll and
    interocular distance), then it is scaled by ``U(*scale)``, rotated by ``U(-rotation,
    rotation)`` degrees about the eyes' midpoint and shifted by ``U(-shift, shift)`` px. Lenses
    are opaque (dark tints hide the eyes), so covered pixels carry no face information. Checked
    over every corner of the jitter ranges at 112x112: every pixel within 2 px of an eye point
    is covered and no covered pixel comes within 15 px of a mouth corner.

    Styles: ``round``, ``square`` and ``aviator`` frames with black, brown, green and grey tints
    and black, gold or silver frames; held out by default: ``aviator_mirror``, ``square_blue``.

    Args:
        prob (float): probability of occluding an image. Defaults to 1.0.
        styles, holdout_styles, colour_jitter, seed, random_colour_prob: see ``BaseOccluder``.
        point_jitter (float): eye-point jitter in 112-template px. Defaults to 2.0.
        shift (float): placement shift in 112-template px. Defaults to 2.5.
        scale (tuple[float, float]): scale range. Defaults to (0.95, 1.15).
        rotation (float): maximum extra rotation in degrees. Defaults to 6.0.

    The report has no sunglasses; these ranges are mmoaml's, kept small enough that the lenses
    always cover the eyes.
    """

    STYLES = {
        'round_black': OccluderStyle('round', ((26, 26, 26), ), ((12, 12, 12), )),
        'round_brown': OccluderStyle('round', ((40, 62, 96), ), ((45, 150, 192), )),
        'square_black': OccluderStyle('square', ((22, 22, 24), ), ((10, 10, 10), )),
        'square_green': OccluderStyle('square', ((44, 78, 44), ), ((16, 16, 16), )),
        'aviator_brown': OccluderStyle('aviator', ((46, 70, 102), ), ((50, 160, 200), )),
        'aviator_grey': OccluderStyle('aviator', ((72, 70, 70), ), ((186, 186, 186), )),
        'aviator_mirror': OccluderStyle('aviator', ((186, 160, 128), ), ((192, 192, 192), )),
        'square_blue': OccluderStyle('square', ((122, 56, 26), ), ((30, 30, 30), )),
    }
    HOLDOUT_STYLES = ('aviator_mirror', 'square_blue')

    ANCHORS = _EYES

    def __init__(self,
                 prob: float = 1.0,
                 styles: Union[str, Sequence[str]] = 'train',
                 holdout_styles: Optional[Sequence[str]] = None,
                 point_jitter: float = 2.0,
                 shift: float = 2.5,
                 scale: Tuple[float, float] = (0.95, 1.15),
                 rotation: float = 6.0,
                 colour_jitter: int = 12,
                 seed: Optional[int] = None,
                 random_colour_prob: float = 0.0) -> None:
        super().__init__(point_jitter, shift, scale, rotation, prob=prob, styles=styles,
                         holdout_styles=holdout_styles, colour_jitter=colour_jitter, seed=seed,
                         random_colour_prob=random_colour_prob)

    def anchor_map(self, anchors: np.ndarray, size: Size) -> Tuple[np.ndarray, np.ndarray]:
        """The similarity through the moved eyes, about their midpoint; see ``PosedOccluder``."""
        return similarity_map(_EYES, anchors, size), anchors.mean(0)

    def render(self, rng: np.random.Generator, style: OccluderStyle, size: Size, colour: BGR,
               accent: BGR) -> Tuple[np.ndarray, np.ndarray, dict]:
        """Draw one pair of sunglasses; see ``BaseOccluder.render``."""
        matrix, params = self.place(rng, size)
        geometry = _SHAPES[style.shape]
        lenses = [transform_points(p, matrix) for p in geometry['lenses']]
        frame: List[Tuple[List[np.ndarray], int, bool]] = [
            (lenses, line_width(1.5, size), True),
            ([transform_points(geometry['bridge'], matrix)], line_width(2.5, size), False),
            ([transform_points(p, matrix) for p in geometry['arms']], line_width(2.0, size),
             False),
        ]
        alpha = np.zeros(size, np.uint8)
        layer = solid(size, colour)
        fill_polygons(alpha, lenses, 255)
        for lines, width, closed in frame:
            draw_polylines(alpha, lines, 255, width, closed)
            draw_polylines(layer, lines, accent, width, closed)
        glint = tuple(min(255, c + 70) for c in colour)
        # A short highlight in the upper left of each lens (one light source), inside the frame.
        glints = [p.mean(0) + 0.6 * (p[[22, 25]] - p.mean(0)) for p in lenses]
        draw_polylines(layer, glints, glint, line_width(1.0, size))
        return layer, alpha, params
