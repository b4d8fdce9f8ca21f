"""Niqab-like cover: fabric over the whole crop except an eye slit on the template's eye line."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from mmoaml.registry import TRANSFORMS
from mmoaml.structures.face_template import LEFT_EYE, RIGHT_EYE, template_points
from .occluder_base import (BGR, BaseOccluder, OccluderStyle, Size, check_range, draw_polylines,
                            fill_layer, fill_polygons, line_width, shade)


def _slit_polygon(shape: str, x0: float, y0: float, x1: float,
                  y1: float) -> Tuple[np.ndarray, float]:
    """The slit outline inside the box ``[x0, x1] x [y0, y1]`` and its end inset.

    The slit holds the full band height between ``x0 + inset`` and ``x1 - inset``.
    """
    cy, half = (y0 + y1) / 2, (y1 - y0) / 2
    if shape == 'straight':
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), 0.0
    if shape == 'tapered':
        inset = 1.2 * half
        return np.array([[x0, cy], [x0 + inset, y0], [x1 - inset, y0], [x1, cy],
                         [x1 - inset, y1], [x0 + inset, y1]]), inset
    # 'rounded': semicircular ends.
    t = np.linspace(-np.pi / 2, np.pi / 2, 13)
    right = np.stack([x1 - half + half * np.cos(t), cy + half * np.sin(t)], 1)
    left = np.stack([x0 + half - half * np.cos(t), cy - half * np.sin(t)], 1)
    return np.concatenate([right, left]), half


@TRANSFORMS.register_module()
class NiqabOcclusion(BaseOccluder):
    """Cover everything but an eye slit, like a niqab (the report's occlusion-batch data).

    The slit is a horizontal band on the 112x112 template's eye line (scaled to the image): its
    height is ``U(*band_height)`` interocular distances (iod), its centre ``0.04`` iod above the
    eye line (the slit reaches the brows more than the cheeks) moved by ``U(-band_shift,
    band_shift)`` iod, and it extends ``U(*slit_extent)`` iod beyond each eye point, drawn
    independently per side. With the defaults every draw keeps both eye points inside the slit's
    full-height part. Everything else, background included, is covered, so only the slit's face
    pixels stay visible. The ranges are mmoaml's (the report's niqab images are photographs).

    ``results['occluder']['params']`` records ``slit`` = ``[x0, y0, x1, y1]`` (the slit's
    bounding box, image pixels) and ``core`` = the box in which the slit has full height (the
    rounded or tapered ends are excluded).

    Styles: fabric colours with a ``straight``, ``rounded`` or ``tapered`` slit and a hem line;
    held out for test sets: ``burgundy_tapered``, ``beige_rounded``; validation styles (neither
    training nor test): ``olive_straight``, ``teal_tapered``, ``grey_rounded``, a dark, a middle
    and a light fabric of hues no other style has, for choosing ``random_colour_prob``
    (docs/synthface.md).

    Args:
        prob (float): probability of covering an image. Defaults to 1.0 (an occluded-batch
            source; mixing with clean faces is the loader's job).
        styles, holdout_styles, colour_jitter, seed, random_colour_prob: see ``BaseOccluder``.
        band_height (tuple[float, float]): slit height range in iod. Defaults to (0.42, 0.62),
            i.e. 15-22 px at 112x112, from the brows to just under the lower lids.
        band_shift (float): vertical jitter of the slit centre in iod. Defaults to 0.08.
        slit_extent (tuple[float, float]): how far the slit reaches beyond each eye point, in iod.
            Defaults to (0.5, 0.65), i.e. to the outer eye corners and a little beyond.
    """

    STYLES = {
        'black_straight': OccluderStyle('straight', ((18, 18, 18), (28, 26, 25)), ((48, 48, 48), )),
        'black_rounded': OccluderStyle('rounded', ((18, 18, 18), (28, 26, 25)), ((48, 48, 48), )),
        'black_crepe': OccluderStyle('tapered', ((24, 24, 24), ), ((42, 42, 42), ), 'blotches'),
        'navy_tapered': OccluderStyle('tapered', ((72, 36, 24), ), ((105, 64, 46), )),
        'brown_rounded': OccluderStyle('rounded', ((36, 52, 76), ), ((60, 80, 110), )),
        'charcoal_straight': OccluderStyle('straight', ((56, 56, 60), ), ((85, 85, 90), )),
        'burgundy_tapered': OccluderStyle('tapered', ((46, 30, 108), ), ((70, 50, 140), )),
        'beige_rounded': OccluderStyle('rounded', ((150, 176, 196), ), ((115, 140, 160), )),
        'olive_straight': OccluderStyle('straight', ((45, 110, 110), ), ((70, 140, 140), )),
        'teal_tapered': OccluderStyle('tapered', ((115, 110, 30), ), ((150, 140, 60), )),
        'grey_rounded': OccluderStyle('rounded', ((165, 165, 160), ), ((125, 125, 120), )),
    }
    HOLDOUT_STYLES = ('burgundy_tapered', 'beige_rounded')
    VALIDATION_STYLES = ('olive_straight', 'teal_tapered', 'grey_rounded')

    def __init__(self,
                 prob: float = 1.0,
                 styles: Union[str, Sequence[str]] = 'train',
                 holdout_styles: Optional[Sequence[str]] = None,
                 band_height: Tuple[float, float] = (0.42, 0.62),
                 band_shift: float = 0.08,
                 slit_extent: Tuple[float, float] = (0.5, 0.65),
                 colour_jitter: int = 12,
                 seed: Optional[int] = None,
                 random_colour_prob: float = 0.0) -> None:
        super().__init__(prob, styles, holdout_styles, colour_jitter, seed, random_colour_prob)
        self.band_height = check_range('NiqabOcclusion', 'band_height', band_height)
        if band_shift < 0:
            raise ValueError(f'NiqabOcclusion: band_shift must be >= 0, got {band_shift}')
        self.band_shift = float(band_shift)
        self.slit_extent = check_range('NiqabOcclusion', 'slit_extent', slit_extent)

    def render(self, rng: np.random.Generator, style: OccluderStyle, size: Size, colour: BGR,
               accent: BGR) -> Tuple[np.ndarray, np.ndarray, dict]:
        """Draw one cover; see ``BaseOccluder.render``."""
        pts = template_points(size).astype(np.float64)
        left, right = pts[LEFT_EYE], pts[RIGHT_EYE]
        iod = float(right[0] - left[0])
        height = rng.uniform(*self.band_height) * iod
        centre = (left[1] + right[1]) / 2 + (rng.uniform(-self.band_shift, self.band_shift) -
                                             0.04) * iod
        x0 = left[0] - rng.uniform(*self.slit_extent) * iod
        x1 = right[0] + rng.uniform(*self.slit_extent) * iod
        y0, y1 = centre - height / 2, centre + height / 2
        slit, inset = _slit_polygon(style.shape, x0, y0, x1, y1)
        alpha = np.full(size, 255, np.uint8)
        fill_polygons(alpha, [slit], 0)
        layer = shade(fill_layer(rng, size, colour, accent, style.pattern))
        draw_polylines(layer, [slit], accent, line_width(2.0, size), closed=True)
        params = dict(
            slit=[round(float(v), 3) for v in (x0, y0, x1, y1)],
            core=[round(float(v), 3) for v in (x0 + inset, y0, x1 - inset, y1)])
        return layer, alpha, params

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, band_height={self.band_height}, '
                f'band_shift={self.band_shift}, slit_extent={self.slit_extent})')
