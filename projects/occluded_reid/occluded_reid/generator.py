"""SynthPerson: procedural pedestrians for a toy occluded re-identification set (numpy + OpenCV).

A "person" is drawn from coloured body parts on a cluttered background, 128 x 64 (H x W) BGR:

* identity (fixed per person, :func:`identity_traits`): skin and hair colours, hair style (short,
  long, cap), top colours and pattern (solid, horizontal or vertical stripes, checks, split,
  logo), sleeve length, bottom colour and style (trousers, shorts, skirt), shoes, bag (none,
  backpack straps, shoulder bag), build (width and height);
* nuisance (new per image, :func:`render_person`): background colours and clutter, position and
  scale, arm and leg pose, colour jitter of every part, illumination gain and colour cast, blur,
  sensor noise, horizontal flip.

Colours come from a small palette (jittered), so identities share colours and differ in their
combination and layout, as in real re-identification.

Occluders (:func:`draw_occluder`) stand for what hides pedestrians: ``lower`` (a car, a bench:
a block from the bottom), ``side`` (a pole, another pedestrian: a vertical band), ``upper`` (an
umbrella, a sign: the head and shoulders), ``blob`` (a bag, a bush: an ellipse over the body),
each textured (plain, stripes, noise). The visibility mask is ``1`` on person pixels that no
occluder covers and ``0`` on background and occluded pixels, mmoaml's convention (1 = visible
identity pixel).

Everything is a function of ``(seed, identity, image index)``: no global random state.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    'HEIGHT', 'WIDTH', 'OCCLUDER_KINDS', 'PersonTraits', 'identity_traits', 'render_person',
    'draw_occluder', 'image_rng'
]

HEIGHT, WIDTH = 128, 64
BGR = Tuple[int, int, int]

#: Clothing palette (BGR): 14 colours shared by all identities.
PALETTE: Tuple[BGR, ...] = (
    (30, 30, 30), (235, 235, 235), (40, 40, 170), (50, 140, 40), (160, 70, 30), (40, 190, 220),
    (130, 50, 130), (30, 110, 230), (120, 120, 120), (160, 160, 60), (90, 60, 40),
    (180, 120, 230), (20, 60, 90), (200, 200, 120))
SKIN: Tuple[BGR, ...] = ((90, 120, 170), (120, 160, 210), (60, 90, 140), (150, 190, 230),
                         (40, 60, 100))
HAIR: Tuple[BGR, ...] = ((20, 20, 20), (30, 60, 100), (60, 110, 170), (150, 150, 150),
                         (20, 30, 60))
TOP_PATTERNS = ('solid', 'hstripes', 'vstripes', 'checks', 'split', 'logo')
BOTTOM_STYLES = ('trousers', 'shorts', 'skirt')
HAIR_STYLES = ('short', 'long', 'cap')
BAGS = ('none', 'backpack', 'shoulder')
OCCLUDER_KINDS = ('lower', 'side', 'upper', 'blob')


@dataclass(frozen=True)
class PersonTraits:
    """What makes one person recognisable (colours BGR)."""
    skin: BGR
    hair: BGR
    hair_style: str
    cap: BGR
    top: BGR
    top2: BGR
    top_pattern: str
    stripe: int
    long_sleeves: bool
    bottom: BGR
    bottom_style: str
    shoes: BGR
    bag: str
    bag_colour: BGR
    width: float
    height: float


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def identity_traits(seed: int, identity: int) -> PersonTraits:
    """The traits of person ``identity`` in the data set of ``seed``."""
    rng = np.random.default_rng((int(seed), int(identity), 0x5EED))
    top, top2 = (PALETTE[i] for i in rng.choice(len(PALETTE), 2, replace=False))
    return PersonTraits(
        skin=_pick(rng, SKIN), hair=_pick(rng, HAIR), hair_style=_pick(rng, HAIR_STYLES),
        cap=_pick(rng, PALETTE), top=top, top2=top2, top_pattern=_pick(rng, TOP_PATTERNS),
        stripe=int(rng.integers(4, 11)), long_sleeves=bool(rng.random() < 0.5),
        bottom=_pick(rng, PALETTE), bottom_style=_pick(rng, BOTTOM_STYLES),
        shoes=_pick(rng, PALETTE[:3] + PALETTE[8:11]), bag=_pick(rng, BAGS),
        bag_colour=_pick(rng, PALETTE), width=float(rng.uniform(0.85, 1.15)),
        height=float(rng.uniform(0.92, 1.0)))


def image_rng(seed: int, identity: int, index: int, stream: int = 1) -> np.random.Generator:
    """The generator of image ``index`` of ``identity`` (``stream`` separates draws such as
    rendering (1) and test occluders (2))."""
    return np.random.default_rng((int(seed), int(identity), int(index), int(stream)))


def _jitter(rng: np.random.Generator, colour: BGR, amount: int = 14) -> BGR:
    c = np.clip(np.array(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in c)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Vertical gradient of two random colours with 3-8 clutter rectangles, ``[H, W, 3]``."""
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    t = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (HEIGHT, WIDTH, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(-10, WIDTH)), int(rng.integers(-10, HEIGHT))
        w, h = int(rng.integers(6, 30)), int(rng.integers(6, 50))
        colour = tuple(int(c) for c in rng.uniform(30, 230, 3))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), colour, -1)
    return img


def _top_texture(traits: PersonTraits, a: BGR, b: BGR, cx: float, y0: int) -> np.ndarray:
    """Full-frame texture of the top garment, ``[H, W, 3]``."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    period = traits.stripe
    if traits.top_pattern == 'hstripes':
        use_b = ((yy - y0) // period) % 2 == 1
    elif traits.top_pattern == 'vstripes':
        use_b = (np.floor((xx - cx) / period).astype(int) % 2) == 1
    elif traits.top_pattern == 'checks':
        use_b = (((yy - y0) // period) + np.floor((xx - cx) / period).astype(int)) % 2 == 1
    elif traits.top_pattern == 'split':
        use_b = xx >= cx
    elif traits.top_pattern == 'logo':
        use_b = (np.abs(xx - cx) <= 5) & (yy >= y0 + 8) & (yy <= y0 + 17)
    else:
        use_b = np.zeros((HEIGHT, WIDTH), bool)
    return np.where(use_b[..., None], np.array(b, np.uint8), np.array(a, np.uint8))


class _Canvas:
    """An image and the person's silhouette, drawn together."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.mask = np.zeros(img.shape[:2], np.uint8)

    def poly(self, points, colour: BGR) -> None:
        pts = [np.round(np.asarray(points)).astype(np.int32)]
        cv2.fillPoly(self.img, pts, colour)
        cv2.fillPoly(self.mask, pts, 1)

    def line(self, p0, p1, colour: BGR, thickness: int) -> None:
        p0, p1 = tuple(int(round(v)) for v in p0), tuple(int(round(v)) for v in p1)
        cv2.line(self.img, p0, p1, colour, thickness)
        cv2.line(self.mask, p0, p1, 1, thickness)

    def ellipse(self, centre, axes, colour: BGR, start: int = 0, end: int = 360) -> None:
        c = tuple(int(round(v)) for v in centre)
        a = tuple(max(1, int(round(v))) for v in axes)
        cv2.ellipse(self.img, c, a, 0, start, end, colour, -1)
        cv2.ellipse(self.mask, c, a, 0, start, end, 1, -1)

    def textured_poly(self, points, texture: np.ndarray) -> None:
        region = np.zeros_like(self.mask)
        cv2.fillPoly(region, [np.round(np.asarray(points)).astype(np.int32)], 1)
        self.img[region > 0] = texture[region > 0]
        self.mask |= region


def _draw_body(canvas: _Canvas, traits: PersonTraits, rng: np.random.Generator) -> None:
    """Head, hair, torso, arms, legs, shoes and bag at a random position, scale and pose."""
    scale = float(rng.uniform(0.9, 1.04))
    ph = HEIGHT * 0.9 * traits.height * scale
    cx = WIDTH / 2 + rng.uniform(-4, 4)
    top = (HEIGHT - ph) / 2 + rng.uniform(-4, 4)
    hr = 0.075 * ph
    half_shoulder = 0.21 * WIDTH * traits.width * scale
    half_hip = 0.17 * WIDTH * traits.width * scale
    neck_y, shoulder_y = top + 2 * hr, top + 2 * hr + 2
    hip_y, foot_y = top + 0.52 * ph, top + ph
    skin, hair = _jitter(rng, traits.skin, 8), _jitter(rng, traits.hair, 8)
    top_a, top_b = _jitter(rng, traits.top), _jitter(rng, traits.top2)
    bottom, shoes = _jitter(rng, traits.bottom), _jitter(rng, traits.shoes)
    if traits.hair_style == 'long':
        canvas.poly([(cx - hr, top + hr), (cx + hr, top + hr), (cx + hr * 1.1, shoulder_y + 6),
                     (cx - hr * 1.1, shoulder_y + 6)], hair)
    # Legs (drawn first: the torso's hem overlaps them).
    stride = rng.uniform(0, 0.09) * WIDTH
    leg_w = max(3, int(round(0.13 * WIDTH * traits.width * scale)))
    knee_y = hip_y + 0.45 * (foot_y - hip_y)
    for side in (-1, 1):
        hip = (cx + side * half_hip * 0.5, hip_y)
        foot = (cx + side * (half_hip * 0.5 + stride), foot_y - 3)
        knee = ((hip[0] + foot[0]) / 2, knee_y)
        upper = skin if traits.bottom_style == 'skirt' else bottom
        lower = bottom if traits.bottom_style == 'trousers' else skin
        canvas.line(hip, knee, upper, leg_w)
        canvas.line(knee, foot, lower, leg_w)
        canvas.ellipse((foot[0] + side, foot_y - 2), (leg_w * 0.7, 2.5), shoes)
    if traits.bottom_style == 'skirt':
        canvas.poly([(cx - half_hip, hip_y - 2), (cx + half_hip, hip_y - 2),
                     (cx + half_hip * 1.35, knee_y + 3), (cx - half_hip * 1.35, knee_y + 3)],
                    bottom)
    # Torso.
    torso = [(cx - half_shoulder, shoulder_y), (cx + half_shoulder, shoulder_y),
             (cx + half_hip, hip_y + 2), (cx - half_hip, hip_y + 2)]
    canvas.textured_poly(torso, _top_texture(traits, top_a, top_b, cx, int(shoulder_y)))
    # Arms: shoulder -> elbow -> hand, swinging per image.
    arm_w = max(2, int(round(0.09 * WIDTH * scale)))
    for side in (-1, 1):
        swing = rng.uniform(-0.06, 0.1) * WIDTH
        shoulder = (cx + side * (half_shoulder - arm_w / 2), shoulder_y + arm_w / 2)
        elbow = (shoulder[0] + side * (2 + swing / 2), shoulder_y + 0.2 * ph)
        hand = (shoulder[0] + side * (3 + swing), hip_y + 0.02 * ph)
        canvas.line(shoulder, elbow, top_a, arm_w)
        canvas.line(elbow, hand, top_a if traits.long_sleeves else skin, arm_w)
        canvas.ellipse(hand, (arm_w * 0.6, arm_w * 0.6), skin)
    _draw_bag(canvas, traits, rng, cx, half_shoulder, shoulder_y, hip_y)
    # Neck, head and hair on top.
    canvas.poly([(cx - hr * 0.4, neck_y - 2), (cx + hr * 0.4, neck_y - 2),
                 (cx + hr * 0.4, shoulder_y + 1), (cx - hr * 0.4, shoulder_y + 1)], skin)
    canvas.ellipse((cx, top + hr), (hr * 0.85, hr), skin)
    if traits.hair_style == 'cap':
        canvas.ellipse((cx, top + hr * 0.8), (hr * 0.95, hr * 0.75), _jitter(rng, traits.cap),
                       180, 360)
        canvas.line((cx - hr, top + hr * 0.8), (cx + hr * 1.6, top + hr * 0.8),
                    _jitter(rng, traits.cap), 2)
    else:
        canvas.ellipse((cx, top + hr * 0.85), (hr * 0.9, hr * 0.8), hair, 180, 360)


def _draw_bag(canvas: _Canvas, traits: PersonTraits, rng: np.random.Generator, cx: float,
              half_shoulder: float, shoulder_y: float, hip_y: float) -> None:
    if traits.bag == 'none':
        return
    colour = _jitter(rng, traits.bag_colour)
    if traits.bag == 'backpack':
        for side in (-1, 1):
            x = cx + side * half_shoulder * 0.55
            canvas.line((x, shoulder_y), (x, shoulder_y + 0.55 * (hip_y - shoulder_y)), colour,
                        2)
        return
    canvas.line((cx - half_shoulder * 0.7, shoulder_y), (cx + half_shoulder, hip_y - 4), colour, 2)
    x0, y0 = cx + half_shoulder * 0.8, hip_y - 10
    canvas.poly([(x0, y0), (x0 + 9, y0), (x0 + 9, y0 + 11), (x0, y0 + 11)], colour)


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Illumination gain and colour cast, blur and sensor noise."""
    gain = rng.uniform(0.7, 1.25) * rng.uniform(0.9, 1.1, 3)
    out = img.astype(np.float32) * gain + rng.uniform(-15, 15)
    sigma = float(rng.uniform(0.0, 1.0))
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0.0, rng.uniform(0.0, 6.0), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_person(traits: PersonTraits, rng: np.random.Generator) -> Tuple[np.ndarray,
                                                                           np.ndarray]:
    """One image of a person.

    Args:
        traits (PersonTraits): the identity.
        rng (np.random.Generator): this image's nuisance draws.

    Returns:
        tuple: ``img`` uint8 ``[128, 64, 3]`` BGR and ``silhouette`` float32 ``[128, 64]``
        (1 = person pixel, 0 = background).
    """
    canvas = _Canvas(_background(rng))
    _draw_body(canvas, traits, rng)
    img, mask = _camera(canvas.img, rng), canvas.mask.astype(np.float32)
    if rng.random() < 0.5:
        img, mask = img[:, ::-1].copy(), mask[:, ::-1].copy()
    return img, mask


def _occluder_region(kind: str, rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """Binary ``[H, W]`` uint8 region (1 = covered) of one occluder of ``kind``."""
    h, w = size
    region = np.zeros((h, w), np.uint8)
    if kind == 'lower':
        y0 = int(h * rng.uniform(0.45, 0.72))
        span = rng.uniform(0.6, 1.0) * w
        x0 = int(rng.uniform(-0.2 * w, w - span + 0.2 * w))
        cv2.rectangle(region, (x0, y0), (int(x0 + span), h), 1, -1)
    elif kind == 'side':
        band = int(w * rng.uniform(0.3, 0.5))
        x0 = int(rng.choice([rng.integers(-band // 3, 1), rng.integers(w - band, w - band // 2 + 1),
                             rng.integers(w // 4, w // 2)]))
        y0 = int(h * rng.uniform(0.0, 0.3))
        cv2.rectangle(region, (x0, y0), (x0 + band, h), 1, -1)
    elif kind == 'upper':
        y1 = int(h * rng.uniform(0.25, 0.42))
        cv2.ellipse(region, (int(w / 2 + rng.uniform(-8, 8)), int(y1 * 0.45)),
                    (int(w * rng.uniform(0.5, 0.7)), int(y1 * 0.6)), 0, 0, 360, 1, -1)
    elif kind == 'blob':
        centre = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.3, 0.75) * h))
        axes = (int(rng.uniform(0.25, 0.45) * w), int(rng.uniform(0.12, 0.25) * h))
        cv2.ellipse(region, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        raise ValueError(f'unknown occluder kind {kind!r}; expected one of {OCCLUDER_KINDS}')
    return region


def _occluder_layer(rng: np.random.Generator, size: Tuple[int, int]) -> np.ndarray:
    """Full-frame texture of an occluder: plain, stripes or noise in random colours."""
    h, w = size
    base = rng.uniform(20, 235, 3)
    layer = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    texture = int(rng.integers(3))
    if texture == 1:
        period = int(rng.integers(3, 9))
        yy = np.arange(h)[:, None] if rng.random() < 0.5 else np.arange(w)[None, :]
        stripes = ((yy // period) % 2 == 1)
        layer[np.broadcast_to(stripes, (h, w))] = rng.uniform(20, 235, 3)
    elif texture == 2:
        layer += rng.normal(0, 25, layer.shape)
    return np.clip(layer, 0, 255).astype(np.uint8)


def draw_occluder(img: np.ndarray, visibility: np.ndarray, rng: np.random.Generator,
                  kinds: Sequence[str] = OCCLUDER_KINDS) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """Draw one occluder of a kind from ``kinds`` onto a copy of ``img``.

    An occluder is redrawn (up to 10 times) until it hides at least 20 % of the person's visible
    pixels, so that an "occluded" image is occluded.

    Args:
        img (np.ndarray): ``[H, W, 3]`` uint8.
        visibility (np.ndarray): ``[H, W]`` float32 in [0, 1] (1 = visible person).
        rng (np.random.Generator): the draws.
        kinds (Sequence[str]): occluder kinds to choose from (:data:`OCCLUDER_KINDS`).

    Returns:
        tuple: the occluded image, its visibility (covered pixels set to 0) and a record
        ``dict(kind=..., covered=<fraction of visible person pixels hidden>)``.
    """
    size = img.shape[:2]
    visible = float(visibility.sum())
    kind, region, covered = kinds[0], None, 0.0
    for _ in range(10):
        kind = _pick(rng, kinds)
        region = _occluder_region(kind, rng, size)
        covered = float((visibility * region).sum()) / max(visible, 1.0)
        if covered >= 0.2:
            break
    layer = _occluder_layer(rng, size)
    out = img.copy()
    out[region > 0] = layer[region > 0]
    return out, visibility * (1 - region).astype(np.float32), dict(kind=kind,
                                                                   covered=round(covered, 3))


def make_person(seed: int, identity: int, index: int,
                occlude: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """Image ``index`` of ``identity``, optionally with one occluder of ``occlude``'s kinds.

    Returns:
        tuple: ``img`` ``[128, 64, 3]`` uint8, ``visibility`` ``[128, 64]`` float32 and the
        occluder record (``{}`` when not occluded).
    """
    img, vis = render_person(identity_traits(seed, identity), image_rng(seed, identity, index))
    if not occlude:
        return img, vis, {}
    return draw_occluder(img, vis, image_rng(seed, identity, index, stream=2), occlude)
