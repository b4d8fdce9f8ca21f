"""The one occluder machinery every mmoaml occluder shares.

A concrete occluder only says what its styles look like and draws one instance
(``BaseOccluder.render``): a full-frame colour layer and an alpha canvas. Everything else lives
here: the application probability, the style pool with held-out styles for test sets, the colour
draw, placement from the 112x112 ArcFace template with the report's jitter, pattern and shading
textures, compositing, the visibility-mask update and the per-image record.

Compositing rule (hard edges). An occluder covers the pixels whose alpha exceeds 128 of 255, the
reference's ``alpha > 128 => occluded`` rule (docs/reference.md#compositing-rule). Covered pixels
take the layer's colour opaquely and every other pixel is left exactly as it was, so the changed
pixels are exactly the pixels the visibility mask marks as covered: no half-transparent rim whose
label would be ambiguous. The procedural renderers draw binary alpha (``cv2.LINE_8``), so the rule
only matters for soft alpha from external RGBA templates.

Coordinates follow OpenCV: pixel (x, y) is centred at the integer point (x, y), the convention of
the ``warpAffine`` alignment that defines the template points. Geometry is given in 112x112
template pixels and scaled to the image (``template_scale``), so any crop size works.
"""
from abc import abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmoaml.structures.face_template import ARCFACE_TEMPLATE_112, LEFT_EYE, RIGHT_EYE
from .pipeline_state import face_image, sample_rng, visibility_mask

BGR = Tuple[int, int, int]
Size = Tuple[int, int]

#: uint8 alpha above which a pixel counts as covered (reference: alpha > 128 => occluded).
ALPHA_OCCLUDED = 128
#: Fractional bits of the fixed-point vertices handed to cv2 drawing (1/16 px precision).
FIXED_SHIFT = 4
PATTERNS = ('plain', 'stripes', 'checks', 'dots', 'blotches')


@dataclass(frozen=True)
class OccluderStyle:
    """One look of an occluder.

    Args:
        shape (str): the shape variant the occluder's ``render`` understands.
        palette (tuple[BGR]): fill colours, one drawn per image and jittered; empty = a uniformly
            random colour.
        accents (tuple[BGR]): detail colours (pleats, hems, frames, pattern); empty = the fill
            colour darkened to 60 %.
        pattern (str): one of ``PATTERNS``; a two-colour texture of fill and accent.
    """
    shape: str
    palette: Tuple[BGR, ...] = ()
    accents: Tuple[BGR, ...] = ()
    pattern: str = 'plain'


class BaseOccluder(BaseTransform):
    """Base of the occluders: draws one occluder onto ``results['img']`` with probability ``prob``.

    On application it replaces ``results['img']`` (a new array; the input is not modified), sets
    ``results['visibility_mask'] = mask * (1 - covered)`` (the mask defaults to
    ``face_region_prior``) and records ``results['occluder'] = dict(type, style, colour, accent,
    params)`` with JSON-friendly values, so a benchmark can log and regenerate every image. A later
    occluder in the same pipeline replaces the record.

    Subclasses define ``STYLES`` (name -> ``OccluderStyle``), ``HOLDOUT_STYLES`` (names kept out of
    training by default, the test sets' styles), ``VALIDATION_STYLES`` (names kept out of training
    and of the test sets, for choosing training options on occluders that neither has seen; may be
    empty) and ``render``.

    Args:
        prob (float): probability of occluding an image. Defaults to 1.0.
        styles (str | Sequence[str]): ``'train'`` = every style except the held-out and the
            validation ones, ``'test'`` = only the held-out ones (a benchmark with unseen
            occluders), ``'val'`` = only ``VALIDATION_STYLES``, ``'all'``, or an explicit list of
            style names. Defaults to ``'train'``.
        holdout_styles (Sequence[str], optional): the held-out names; None = ``HOLDOUT_STYLES``.
        colour_jitter (int): each BGR channel of a palette colour moves by up to this many levels.
            Defaults to 12.
        seed (int, optional): None = draw from NumPy's global RNG (training); an int = the same
            occluder for a given ``sample_idx`` in every run (fixed benchmarks). See
            ``pipeline_state``.
        random_colour_prob (float): probability that an instance ignores its style's palettes and
            takes a uniformly random fill colour (accent: the fill darkened to 60 %), so that a
            model cannot tell covered from visible by the fabric colours of the training styles.
            Defaults to 0.0 (an mmoaml option; 0 draws nothing extra, so seeded benchmarks are
            unchanged).
    """

    STYLES: Dict[str, OccluderStyle] = {}
    HOLDOUT_STYLES: Tuple[str, ...] = ()
    VALIDATION_STYLES: Tuple[str, ...] = ()

    def __init__(self,
                 prob: float = 1.0,
                 styles: Union[str, Sequence[str]] = 'train',
                 holdout_styles: Optional[Sequence[str]] = None,
                 colour_jitter: int = 12,
                 seed: Optional[int] = None,
                 random_colour_prob: float = 0.0) -> None:
        name = type(self).__name__
        for arg, value in (('prob', prob), ('random_colour_prob', random_colour_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name}: {arg} must be in [0, 1], got {value}')
        if colour_jitter < 0:
            raise ValueError(f'{name}: colour_jitter must be >= 0, got {colour_jitter}')
        self.prob = float(prob)
        self.colour_jitter = int(colour_jitter)
        self.random_colour_prob = float(random_colour_prob)
        self.seed = seed
        holdout = self.HOLDOUT_STYLES if holdout_styles is None else tuple(holdout_styles)
        self.holdout_styles = self._known(holdout, 'holdout_styles')
        self._known(self.VALIDATION_STYLES, 'VALIDATION_STYLES')
        self.styles = self._resolve_styles(styles)

    def _known(self, names: Sequence[str], arg: str) -> Tuple[str, ...]:
        unknown = [n for n in names if n not in self.STYLES]
        if unknown:
            raise ValueError(f'{type(self).__name__}: unknown style(s) {unknown} in {arg}; '
                             f'known styles: {sorted(self.STYLES)}')
        return tuple(names)

    def _resolve_styles(self, styles: Union[str, Sequence[str]]) -> Tuple[str, ...]:
        if styles == 'train':
            kept_out = self.holdout_styles + self.VALIDATION_STYLES
            chosen = tuple(n for n in self.STYLES if n not in kept_out)
        elif styles == 'test':
            chosen = self.holdout_styles
        elif styles == 'val':
            chosen = self.VALIDATION_STYLES
        elif styles == 'all':
            chosen = tuple(self.STYLES)
        elif isinstance(styles, str):
            raise ValueError(f"{type(self).__name__}: styles must be 'train', 'test', 'val', "
                             f"'all' or a list of style names, got {styles!r}")
        else:
            chosen = self._known(tuple(styles), 'styles')
        if not chosen:
            raise ValueError(f'{type(self).__name__}: styles={styles!r} selects no style '
                             f'(held out: {list(self.holdout_styles)})')
        return chosen

    def transform(self, results: dict) -> dict:
        """Occlude ``results['img']`` with probability ``prob``; see the class docstring."""
        owner = type(self).__name__
        rng = sample_rng(results, self.seed, owner)
        if rng.random() >= self.prob:
            return results
        img = face_image(results, owner)
        vis = visibility_mask(results, owner)
        name = self.styles[int(rng.integers(len(self.styles)))]
        style = self.STYLES[name]
        # The extra draw only when enabled: seeded benchmarks keep their random streams.
        random_colour = self.random_colour_prob > 0 and rng.random() < self.random_colour_prob
        colour = self._draw_colour(rng, () if random_colour else style.palette)
        accent = (self._draw_colour(rng, style.accents) if style.accents and not random_colour
                  else tuple(int(c * 0.6) for c in colour))
        layer, alpha, params = self.render(rng, style, img.shape[:2], colour, accent)
        covered = alpha > ALPHA_OCCLUDED
        results['img'] = cv2.copyTo(layer, covered.view(np.uint8), img.copy())
        results['visibility_mask'] = vis * ~covered
        results['occluder'] = dict(
            type=owner, style=name, colour=list(colour), accent=list(accent), params=params)
        return results

    def _draw_colour(self, rng: np.random.Generator, palette: Tuple[BGR, ...]) -> BGR:
        if not palette:
            return tuple(int(c) for c in rng.integers(0, 256, 3))
        base = np.array(palette[int(rng.integers(len(palette)))])
        jitter = rng.integers(-self.colour_jitter, self.colour_jitter + 1, 3)
        return tuple(int(c) for c in np.clip(base + jitter, 0, 255))

    @abstractmethod
    def render(self, rng: np.random.Generator, style: OccluderStyle, size: Size, colour: BGR,
               accent: BGR) -> Tuple[np.ndarray, np.ndarray, dict]:
        """Draw one occluder instance.

        Args:
            rng (np.random.Generator): the call's generator (placement jitter etc.).
            style (OccluderStyle): the drawn style.
            size (tuple[int, int]): image ``(H, W)``.
            colour (BGR): the drawn fill colour.
            accent (BGR): the drawn detail colour.

        Returns:
            tuple: ``layer`` ``[H, W, 3]`` uint8 (only covered pixels are used), ``alpha``
            ``[H, W]`` uint8 (``> ALPHA_OCCLUDED`` = covered), ``params`` (JSON-friendly dict of
            the drawn geometry).
        """

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, styles={list(self.styles)}, '
                f'holdout_styles={list(self.holdout_styles)}, '
                f'colour_jitter={self.colour_jitter}, seed={self.seed}, '
                f'random_colour_prob={self.random_colour_prob})')


# ---------------------------------------------------------------- placement on the template


def template_scale(size: Size) -> np.ndarray:
    """``(sx, sy)`` from 112x112 template pixels to an ``(H, W)`` image's pixels."""
    return np.array([size[1] / 112.0, size[0] / 112.0])


def similarity_map(src: np.ndarray, dst: np.ndarray, size: Size) -> np.ndarray:
    """The ``[2, 3]`` map from 112-template coordinates taking two points ``src`` onto ``dst``.

    The template frame is first scaled to the ``(H, W)`` image (anisotropically when the image is
    not square), then a similarity (rotation, uniform scale, translation) takes the scaled
    ``src`` onto ``dst`` (image pixels).
    """
    s = template_scale(size)
    s0, s1 = (complex(*p) for p in np.asarray(src, np.float64) * s)
    d0, d1 = (complex(*p) for p in np.asarray(dst, np.float64))
    a = (d1 - d0) / (s1 - s0)
    b = d0 - a * s0
    return np.array([[a.real * s[0], -a.imag * s[1], b.real], [a.imag * s[0], a.real * s[1],
                                                                b.imag]])


def check_pose_args(owner: str, point_jitter: float, shift: float, scale: Tuple[float, float],
                    rotation: float, max_point_jitter: float) -> None:
    """Reject jitter ranges that would fold the placement (e.g. mouth corners crossing)."""
    if not 0 <= point_jitter < max_point_jitter:
        raise ValueError(f'{owner}: point_jitter must be in [0, {max_point_jitter}), '
                         f'got {point_jitter}')
    if shift < 0 or rotation < 0:
        raise ValueError(f'{owner}: shift and rotation must be >= 0, got {shift}, {rotation}')
    check_range(owner, 'scale', scale)


def check_range(owner: str, name: str, value: Tuple[float, float]) -> Tuple[float, float]:
    """Reject a ``(low, high)`` argument unless ``0 < low <= high``.

    Returns:
        tuple[float, float]: ``value`` as floats.
    """
    if not 0 < value[0] <= value[1]:
        raise ValueError(f'{owner}: {name} must be 0 < low <= high, got {value}')
    return tuple(float(v) for v in value)


def jitter_points(rng: np.random.Generator, points: np.ndarray, size: Size,
                  amount: float) -> Tuple[np.ndarray, np.ndarray]:
    """Move template points (``[N, 2]``, 112 px frame) by ``U(-amount, amount)`` px in x and y.

    Returns:
        tuple: the moved points in the ``(H, W)`` image's pixels and the offsets drawn (112 px).
    """
    points = np.asarray(points, np.float64)
    offsets = rng.uniform(-amount, amount, points.shape)
    return (points + offsets) * template_scale(size), offsets


def jittered_pose(rng: np.random.Generator, base: np.ndarray, centre: np.ndarray, size: Size,
                  shift: float, scale: Tuple[float, float],
                  rotation: float) -> Tuple[np.ndarray, dict]:
    """Compose a placement ``base`` (``[2, 3]``, template -> image) with a random pose.

    The placed shape is scaled by ``U(*scale)`` and rotated by ``U(-rotation, rotation)`` degrees
    about ``centre`` (image pixels), then shifted by ``U(-shift, shift)`` px (112-template px,
    scaled to the image) in x and y.

    Returns:
        tuple: the ``[2, 3]`` map and a JSON-friendly dict of the drawn values.
    """
    factor = float(rng.uniform(*scale))
    angle = float(rng.uniform(-rotation, rotation))
    translation = rng.uniform(-shift, shift, 2)
    theta = np.deg2rad(angle)
    rot = factor * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = np.empty((2, 3))
    matrix[:, :2] = rot @ base[:, :2]
    matrix[:, 2] = rot @ (base[:, 2] - centre) + centre + translation * template_scale(size)
    params = dict(
        scale=round(factor, 4),
        rotation_deg=round(angle, 3),
        shift=np.round(translation, 3).tolist())
    return matrix, params


class PosedOccluder(BaseOccluder):
    """Base of the occluders placed from jittered template landmarks (the report's placement).

    The landmarks ``ANCHORS`` (``[K, 2]``, 112-template px) each move by ``U(-point_jitter,
    point_jitter)`` px in x and y, ``anchor_map`` turns the moved landmarks into a placement, and
    ``jittered_pose`` adds the random scale, rotation and shift. Subclasses define ``ANCHORS``,
    ``anchor_map`` and ``render`` (which calls ``place``).

    Args:
        point_jitter (float): anchor jitter in 112-template px, below ``MAX_POINT_JITTER``.
        shift (float): placement shift in 112-template px.
        scale (tuple[float, float]): scale range.
        rotation (float): maximum rotation in degrees.
        **kwargs: ``prob``, ``styles``, ``holdout_styles``, ``colour_jitter``, ``seed``,
            ``random_colour_prob``; see ``BaseOccluder``.
    """

    ANCHORS: np.ndarray
    #: Larger anchor jitter could fold the placement (e.g. mouth corners crossing).
    MAX_POINT_JITTER = 10.0

    def __init__(self, point_jitter: float, shift: float, scale: Tuple[float, float],
                 rotation: float, **kwargs) -> None:
        # Keyword arguments for the base: the concrete occluders own the defaults.
        super().__init__(**kwargs)
        check_pose_args(type(self).__name__, point_jitter, shift, scale, rotation,
                        self.MAX_POINT_JITTER)
        self.point_jitter = float(point_jitter)
        self.shift = float(shift)
        self.scale = tuple(float(s) for s in scale)
        self.rotation = float(rotation)

    @abstractmethod
    def anchor_map(self, anchors: np.ndarray, size: Size) -> Tuple[np.ndarray, np.ndarray]:
        """The placement before the random pose.

        Args:
            anchors (np.ndarray): ``[K, 2]`` moved ``ANCHORS`` in the image's pixels.
            size (tuple[int, int]): image ``(H, W)``.

        Returns:
            tuple: the ``[2, 3]`` map (template -> image) and the ``[2]`` pose centre (image
            pixels) about which ``jittered_pose`` scales and rotates.
        """

    def place(self, rng: np.random.Generator, size: Size) -> Tuple[np.ndarray, dict]:
        """Draw one placement.

        Returns:
            tuple: the ``[2, 3]`` map (template -> image) and the JSON-friendly ``params`` of
            ``jittered_pose`` plus ``anchor_offsets`` (``[K, 2]`` 112-template px).
        """
        moved, offsets = jitter_points(rng, self.ANCHORS, size, self.point_jitter)
        base, centre = self.anchor_map(moved, size)
        matrix, params = jittered_pose(rng, base, centre, size, self.shift, self.scale,
                                       self.rotation)
        params['anchor_offsets'] = np.round(offsets, 3).tolist()
        return matrix, params

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, point_jitter={self.point_jitter}, '
                f'shift={self.shift}, scale={self.scale}, rotation={self.rotation})')


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``[2, 3]`` map to ``[K, 2]`` points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def fixed_point(points: np.ndarray) -> np.ndarray:
    """``[K, 2]`` float points as cv2 fixed-point int32 vertices (use with ``FIXED_SHIFT``)."""
    return np.round(np.asarray(points) * (1 << FIXED_SHIFT)).astype(np.int32)


def fill_polygons(canvas: np.ndarray, polygons: Sequence[np.ndarray], value) -> None:
    """Fill float-vertex polygons with hard edges (sub-pixel vertices, no anti-aliasing)."""
    cv2.fillPoly(canvas, [fixed_point(p) for p in polygons], value, cv2.LINE_8, FIXED_SHIFT)


def draw_polylines(canvas: np.ndarray, lines: Sequence[np.ndarray], value, thickness: int,
                   closed: bool = False) -> None:
    """Draw float-vertex polylines with hard edges."""
    cv2.polylines(canvas, [fixed_point(p) for p in lines], closed, value, thickness, cv2.LINE_8,
                  FIXED_SHIFT)


def line_width(width_112: float, size: Size) -> int:
    """A stroke width given in 112-template pixels, in an ``(H, W)`` image's pixels (>= 1)."""
    return max(1, int(width_112 * min(size) / 112.0 + 0.5))


# ---------------------------------------------------------------- textures


def solid(size: Size, colour: BGR) -> np.ndarray:
    """A new ``[H, W, 3]`` uint8 image of one colour."""
    row = np.empty((size[1], 3), np.uint8)
    row[:] = colour
    # Repeating a filled row is ~10x faster than broadcasting a colour into an H x W x 3 array.
    return np.repeat(row[None], size[0], 0)


def fill_layer(rng: np.random.Generator, size: Size, colour: BGR, accent: BGR,
               pattern: str) -> np.ndarray:
    """A full-frame ``[H, W, 3]`` uint8 layer: the fill colour, or a two-colour pattern."""
    layer = solid(size, colour)
    if pattern != 'plain':
        cv2.copyTo(solid(size, accent), pattern_window(rng, pattern, size).view(np.uint8), layer)
    return layer


def pattern_window(rng: np.random.Generator, pattern: str, size: Size) -> np.ndarray:
    """A random ``[H, W]`` window of a boolean texture (True = accent); one master per size."""
    if pattern not in PATTERNS[1:]:
        raise ValueError(f'unknown pattern {pattern!r}; known: {list(PATTERNS)}')
    h, w = size
    master = _pattern_master(pattern, h, w)
    y, x = int(rng.integers(h)), int(rng.integers(w))
    return master[y:y + h, x:x + w]


@lru_cache(maxsize=32)
def _pattern_master(pattern: str, h: int, w: int) -> np.ndarray:
    # Twice the image size, so that a random window gives a random phase without copying.
    period = max(4, int(round(8 * min(h, w) / 112.0)))
    ys, xs = np.mgrid[0:2 * h, 0:2 * w]
    if pattern == 'stripes':
        master = (xs + ys) % period < period // 2
    elif pattern == 'checks':
        master = (xs // period + ys // period) % 2 == 0
    elif pattern == 'dots':
        dy = ys % period - period / 2.0
        dx = xs % period - period / 2.0
        master = dx * dx + dy * dy <= (period / 3.5)**2
    else:
        noise = np.random.default_rng(0).random((2 * h, 2 * w)).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), period / 2.0)
        master = smooth > np.median(smooth)
    master.flags.writeable = False
    return master


def shade(layer: np.ndarray) -> np.ndarray:
    """Darken a layer towards the face's sides (a cylinder-like light falloff), 100 % to 70 %.

    Centred on the template's eye midpoint; makes fabric occluders look less like flat stickers.
    """
    h, w = layer.shape[:2]
    return cv2.multiply(layer, _shade_map(h, w), scale=1.0 / 255.0)


@lru_cache(maxsize=16)
def _shade_map(h: int, w: int) -> np.ndarray:
    cx = float(ARCFACE_TEMPLATE_112[[LEFT_EYE, RIGHT_EYE], 0].mean()) * w / 112.0
    xs = (np.arange(w) - cx) / (0.5 * w)
    factor = np.clip(1.0 - 0.3 * xs**2, 0.7, 1.0)
    shade_map = np.empty((h, w, 3), np.uint8)
    shade_map[:] = np.round(factor * 255).astype(np.uint8)[None, :, None]
    shade_map.flags.writeable = False
    return shade_map
