"""A random patch: random shape, size, position, rotation and fill (FROM / QAConv-style)."""
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from mmoaml.registry import TRANSFORMS
from .occluder_base import (BGR, BaseOccluder, OccluderStyle, Size, check_range, fill_layer,
                            fill_polygons, solid)

SHAPES = ('rectangle', 'ellipse', 'triangle', 'polygon')


@TRANSFORMS.register_module()
class RandomOcclusion(BaseOccluder):
    """Occlude a random region with a random patch.

    Like FROM's occluded benchmarks (one occluder centred at a uniformly random pixel, free to
    spill off the image; docs/reference.md#existing-benchmarks) and
    random-erasing style training, but drawn procedurally: the patch's side is ``U(*side_range)``
    times
    the image's shorter side, its aspect ratio ``U(*aspect_ratio)`` (log-uniform), its centre
    uniform over the image, its rotation uniform in [0, 180) degrees and its shape one of
    ``shapes``: ``rectangle``, ``ellipse``, ``triangle`` (vertices on the ellipse) or ``polygon``
    (5-9 vertices, star-shaped around the centre).

    Styles are the fills: ``solid`` (a uniformly random colour), ``stripes``, ``dots``,
    ``blotches`` (two random colours), ``noise`` (a random colour mixed with per-pixel noise);
    held out by default: ``checks``.

    Args:
        prob (float): probability of occluding an image. Defaults to 1.0.
        styles, holdout_styles, colour_jitter, seed, random_colour_prob: see ``BaseOccluder``.
        side_range (tuple[float, float]): the patch side as a fraction of the image's shorter
            side. Defaults to (0.2, 0.5).
        aspect_ratio (tuple[float, float]): width / height range. Defaults to (0.5, 2.0).
        shapes (Sequence[str]): the shapes drawn from. Defaults to all of ``SHAPES``.
    """

    STYLES = {
        'solid': OccluderStyle('solid'),
        'stripes': OccluderStyle('pattern', pattern='stripes'),
        'dots': OccluderStyle('pattern', pattern='dots'),
        'blotches': OccluderStyle('pattern', pattern='blotches'),
        'noise': OccluderStyle('noise'),
        'checks': OccluderStyle('pattern', pattern='checks'),
    }
    HOLDOUT_STYLES = ('checks', )

    def __init__(self,
                 prob: float = 1.0,
                 styles: Union[str, Sequence[str]] = 'train',
                 holdout_styles: Optional[Sequence[str]] = None,
                 side_range: Tuple[float, float] = (0.2, 0.5),
                 aspect_ratio: Tuple[float, float] = (0.5, 2.0),
                 shapes: Sequence[str] = SHAPES,
                 colour_jitter: int = 12,
                 seed: Optional[int] = None,
                 random_colour_prob: float = 0.0) -> None:
        super().__init__(prob, styles, holdout_styles, colour_jitter, seed, random_colour_prob)
        self.side_range = check_range('RandomOcclusion', 'side_range', side_range)
        self.aspect_ratio = check_range('RandomOcclusion', 'aspect_ratio', aspect_ratio)
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes:
            raise ValueError(f'RandomOcclusion: shapes must be a non-empty subset of {SHAPES}, '
                             f'got {list(shapes)}')
        self.shapes = tuple(shapes)

    def render(self, rng: np.random.Generator, style: OccluderStyle, size: Size, colour: BGR,
               accent: BGR) -> Tuple[np.ndarray, np.ndarray, dict]:
        """Draw one patch; see ``BaseOccluder.render``."""
        h, w = size
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        side = rng.uniform(*self.side_range) * min(h, w)
        ratio = np.exp(rng.uniform(*np.log(self.aspect_ratio)))
        half = np.array([side * np.sqrt(ratio), side / np.sqrt(ratio)]) / 2
        centre = rng.uniform((0.0, 0.0), (w, h))
        angle = rng.uniform(0.0, 180.0)
        outline = _outline(rng, shape) * half
        theta = np.deg2rad(angle)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        alpha = np.zeros(size, np.uint8)
        fill_polygons(alpha, [outline @ rot.T + centre], 255)
        if style.shape == 'noise':
            noise = _noise_master(h, w)
            y, x = int(rng.integers(h)), int(rng.integers(w))
            layer = cv2.addWeighted(noise[y:y + h, x:x + w], 0.5, solid(size, colour), 0.5, 0.0)
        else:
            # A random second colour for patterns (the base gives a darker shade of the fill).
            second = accent if style.shape == 'solid' else tuple(
                int(c) for c in rng.integers(0, 256, 3))
            layer = fill_layer(rng, size, colour, second, style.pattern)
        params = dict(
            shape=shape,
            centre=np.round(centre, 3).tolist(),
            width=round(float(2 * half[0]), 3),
            height=round(float(2 * half[1]), 3),
            rotation_deg=round(float(angle), 3))
        return layer, alpha, params

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, side_range={self.side_range}, '
                f'aspect_ratio={self.aspect_ratio}, shapes={list(self.shapes)})')


def _outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A shape's outline in the unit frame (half-axes 1), ``[K, 2]``."""
    if shape == 'rectangle':
        return np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    if shape == 'ellipse':
        return _UNIT_CIRCLE
    # Vertices at roughly even angles (each moved by up to 40 % of the spacing) keep triangles
    # and polygons from degenerating into slivers.
    n = 3 if shape == 'triangle' else int(rng.integers(5, 10))
    t = rng.uniform(0.0, 2 * np.pi) + (np.arange(n) + rng.uniform(-0.4, 0.4, n)) * 2 * np.pi / n
    r = np.ones(n) if shape == 'triangle' else rng.uniform(0.5, 1.0, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


_UNIT_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)),
     np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1)


@lru_cache(maxsize=16)
def _noise_master(h: int, w: int) -> np.ndarray:
    # Twice the image size so a random window gives fresh noise without drawing 3 x H x W values.
    noise = np.random.default_rng(0).integers(0, 256, (2 * h, 2 * w, 3), dtype=np.uint8)
    noise = cv2.GaussianBlur(noise, (3, 3), 0)
    noise.flags.writeable = False
    return noise
