"""SynthFace's two random sources: identity traits and the per-image nuisance, with their seeding.

Every generator of SynthFace is ``np.random.default_rng([seed, tag, ...])`` with a tag per
stream (0 noise banks, 1 identity traits, 2 image nuisance, 3 verification pairs, 4 occluded
images), so that no two streams share draws.
"""
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

__all__ = [
    'TEST_ID_OFFSET', 'TRAIT_NAMES', 'TRAIT_DIM', 'APPEARANCE_TRAITS', 'DEFAULT_TRAIT_JITTER',
    'Nuisance', 'ImageTraits', 'draw_identity_traits', 'image_traits', 'nuisance_rng',
    'occluded_rng', 'pairs_rng', 'holdout_pairs_rng', 'bank_rng'
]

#: Identity ids of the ``test`` split start here (disjoint from any realistic training set).
TEST_ID_OFFSET = 1 << 24

#: Named continuous identity traits, each a standard normal clipped to +-2.5.
TRAIT_NAMES = (
    # geometry of the neutral face
    'eye_spacing', 'nose_length', 'mouth_height', 'mouth_width', 'face_width', 'jaw_width',
    'chin_length', 'chin_width', 'forehead_height', 'cheek_fullness',
    # skin
    'skin_lightness', 'skin_warmth', 'skin_blotchiness', 'freckle_density', 'cheek_blush',
    'stubble',
    # eyes
    'eye_width', 'eye_openness', 'eye_tilt', 'iris_hue', 'iris_darkness', 'iris_size',
    'under_eye_shadow',
    # brows
    'brow_thickness', 'brow_arch', 'brow_height', 'brow_length', 'brow_darkness', 'brow_slope',
    # nose
    'nose_width', 'nostril_size', 'bridge_width', 'nose_tip_size',
    # mouth
    'upper_lip', 'lower_lip', 'lip_redness', 'lip_darkness', 'cupid_bow', 'mouth_corner_tilt',
    # lower face
    'nasolabial_depth', 'chin_cleft', 'jaw_shadow', 'mark_strength_1', 'mark_strength_2',
    # hair (weak: the per-image variation is larger)
    'hair_darkness', 'hair_warmth', 'hairline_height')
#: Traits that change more between photos of one person (make-up, tan, grooming, shaving):
#: their per-image jitter is 1.5x ``trait_jitter``; shape traits get 1x.
APPEARANCE_TRAITS = ('skin_lightness', 'skin_warmth', 'skin_blotchiness', 'cheek_blush',
                     'stubble', 'under_eye_shadow', 'brow_darkness', 'lip_redness',
                     'lip_darkness', 'jaw_shadow', 'hair_darkness', 'hair_warmth',
                     'hairline_height')
#: Default ``trait_jitter``; see :class:`~mmoaml.datagen.SynthFaceGenerator`.
DEFAULT_TRAIT_JITTER = 0.6
_JITTER_SCALE = np.array([1.5 if name in APPEARANCE_TRAITS else 1.0 for name in TRAIT_NAMES])
_TEXTURE_GRID = 6
_NUM_FRECKLES = 12
_NUM_MARKS = 2
_TEXTURE = slice(len(TRAIT_NAMES), len(TRAIT_NAMES) + _TEXTURE_GRID**2)
#: Weights of the identity's and the image's skin texture fields (unit variance in sum).
_TEXTURE_IDENTITY, _TEXTURE_IMAGE = 0.6, 0.8
_FRECKLES = slice(_TEXTURE.stop, _TEXTURE.stop + 2 * _NUM_FRECKLES)
_MARKS = slice(_FRECKLES.stop, _FRECKLES.stop + 2 * _NUM_MARKS)
#: Length of a trait vector: the named traits, the skin texture field, freckle and mark spots.
TRAIT_DIM = _MARKS.stop

_BANK_TAG, _IDENTITY_TAG, _NUISANCE_TAG, _PAIRS_TAG, _OCCLUDED_TAG = 0, 1, 2, 3, 4


def bank_rng(seed: int) -> np.random.Generator:
    """The generator of a SynthFace generator's fixed noise banks under ``seed``."""
    return np.random.default_rng([seed, _BANK_TAG])


def nuisance_rng(seed: int, identity_id: int, image_index: int) -> np.random.Generator:
    """The generator of image ``image_index`` of identity ``identity_id`` under ``seed``."""
    return np.random.default_rng([int(seed), _NUISANCE_TAG, int(identity_id), int(image_index)])


def occluded_rng(seed: int, identity_id: int, image_index: int) -> np.random.Generator:
    """The generator of occluded image ``image_index`` of an identity (``write_synthface``).

    A stream separate from :func:`nuisance_rng`, so occluded images are new draws, not
    occluded copies of training images. The writer renders with it, then draws the occluder
    type from the same generator.
    """
    return np.random.default_rng([int(seed), _OCCLUDED_TAG, int(identity_id), int(image_index)])


def pairs_rng(seed: int) -> np.random.Generator:
    """The generator of the verification pairs of the data set of ``seed``."""
    return np.random.default_rng([seed, _PAIRS_TAG])


def holdout_pairs_rng(seed: int) -> np.random.Generator:
    """The generator of the held-out (validation) pairs of the data set of ``seed``."""
    return np.random.default_rng([seed, _PAIRS_TAG, 1])


def draw_identity_traits(seed: int, identity_id: int) -> np.ndarray:
    """The trait vector of identity ``identity_id`` under ``seed``: ``[TRAIT_DIM]`` float64.

    Named traits (standard normal, clipped to +-2.5), then a ``6 x 6`` skin texture field,
    then freckle and mark positions (uniform in [0, 1]).
    """
    rng = np.random.default_rng([seed, _IDENTITY_TAG, int(identity_id)])
    named = np.clip(rng.standard_normal(len(TRAIT_NAMES)), -2.5, 2.5)
    texture = rng.standard_normal(_TEXTURE_GRID**2)
    spots = rng.random(2 * (_NUM_FRECKLES + _NUM_MARKS))
    return np.concatenate([named, texture, spots])


@dataclass(frozen=True)
class Nuisance:
    """The per-image factors of one SynthFace image; :meth:`neutral` is the plain passport face.

    Distances are in pixels of the 112x112 face frame, angles in degrees.

    Args:
        yaw, pitch (float): head turn in [-1, 1]; moves nose, eyes and mouth against the face
            outline by up to about 3 px (nose tip) before alignment.
        roll, scale, shift: alignment residual (in-plane rotation, relative scale, ``(dx, dy)``).
        smile, mouth_open, brow_raise (float): expression, smile and mouth_open in [0, 1],
            brow_raise in [-1, 1].
        gaze (tuple): iris offset ``(dx, dy)`` as fractions of the eye's half-size.
        trait_noise (np.ndarray): per-image offset of the named traits, ``[len(TRAIT_NAMES)]``.
        texture_noise (np.ndarray): per-image part of the skin texture field, ``[36]``.
        hairline, fringe, part, hair_volume, side_hair, hair_length (float): hair style.
        hair_darkness, hair_warmth (float): per-image hair colour (standard-normal units).
        background (np.ndarray): ``[3, 3, 3]`` BGR corner colours, smoothly interpolated.
        gain, light_angle, light_strength (float), cast (tuple): illumination.
        blur_sigma, noise_sigma (float), jpeg_quality (int, 0 = not compressed): capture.
        noise_offset (tuple): window of the generator's noise bank used by this image.
    """
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    shift: Tuple[float, float] = (0.0, 0.0)
    smile: float = 0.0
    mouth_open: float = 0.0
    brow_raise: float = 0.0
    gaze: Tuple[float, float] = (0.0, 0.0)
    trait_noise: Optional[np.ndarray] = None
    texture_noise: Optional[np.ndarray] = None
    hairline: float = 0.0
    fringe: float = 0.0
    part: float = 0.0
    hair_volume: float = 3.0
    side_hair: float = 8.0
    hair_length: float = 10.0
    hair_darkness: float = 0.0
    hair_warmth: float = 0.0
    background: np.ndarray = field(
        default_factory=lambda: np.full((3, 3, 3), 128.0, dtype=np.float32))
    gain: float = 1.0
    light_angle: float = 0.0
    light_strength: float = 0.0
    cast: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int = 0
    noise_offset: Tuple[int, int] = (0, 0)

    @classmethod
    def neutral(cls) -> 'Nuisance':
        """Frontal, neutral expression, even light, grey background, no blur, noise or JPEG."""
        return cls()

    @classmethod
    def draw(cls, rng: np.random.Generator, trait_jitter: float, size: int) -> 'Nuisance':
        """Draw the nuisance of one image.

        Args:
            rng (np.random.Generator): the image's generator.
            trait_jitter (float): standard deviation of the per-image trait offset.
            size (int): output image size (for the noise-bank window).
        """
        # One vectorised draw per distribution: a per-factor Generator call costs more than the
        # rest of the draw together.
        u = rng.random(24)
        g = rng.standard_normal(12)
        trait_noise = rng.standard_normal(len(TRAIT_NAMES)) * (trait_jitter * _JITTER_SCALE)
        texture_noise = rng.standard_normal(_TEXTURE_GRID**2)
        # Backgrounds: muted indoor colours mostly, a saturated colour sometimes.
        chroma = 60.0 if u[20] < 0.15 else 18.0
        base = 45 + 170 * u[21] + chroma * rng.standard_normal(3)
        background = base + 22 * rng.standard_normal((3, 3, 3))
        return cls(
            yaw=2 * u[0] - 1,
            pitch=2 * u[1] - 1,
            roll=float(np.clip(2.0 * g[0], -5, 5)),
            scale=float(np.clip(1 + 0.025 * g[1], 0.94, 1.06)),
            shift=(float(np.clip(g[2], -2.5, 2.5)), float(np.clip(g[3], -2.5, 2.5))),
            smile=float(np.clip(0.15 + 0.3 * g[4], 0.0, 1.0)),
            mouth_open=0.2 + 0.8 * u[2] if u[3] < 0.25 else 0.0,
            brow_raise=float(np.clip(0.4 * g[5], -1, 1)),
            gaze=(0.6 * u[4] - 0.3, 0.6 * u[5] - 0.3),
            trait_noise=trait_noise,
            texture_noise=texture_noise,
            hairline=3.0 * g[6],
            fringe=0.3 + 0.7 * u[6] if u[7] < 0.3 else 0.0,
            part=2 * u[8] - 1,
            hair_volume=1.0 + 6.0 * u[9],
            side_hair=-4.0 + 26.0 * u[10],
            hair_length=70.0 * u[11],
            hair_darkness=float(g[7]),
            hair_warmth=float(g[8]),
            background=np.clip(background, 0, 255).astype(np.float32),
            gain=0.7 + 0.55 * u[12],
            light_angle=360.0 * u[13],
            light_strength=0.5 * u[14],
            cast=tuple(float(np.clip(1 + 0.05 * v, 0.85, 1.15)) for v in g[9:12]),
            blur_sigma=0.3 + 1.0 * u[15] if u[16] < 0.5 else 0.0,
            noise_sigma=6.0 * u[17],
            jpeg_quality=int(35 + 61 * u[18]) if u[19] < 0.6 else 0,
            noise_offset=(int(u[22] * size), int(u[23] * size)))


class ImageTraits(NamedTuple):
    """The traits of one image: the identity's, moved by the image's nuisance.

    Attributes:
        named (dict[str, float]): trait name -> value (identity trait plus per-image offset).
        texture (np.ndarray): ``[6, 6]`` skin texture field.
        freckles (np.ndarray): ``[12, 2]`` freckle positions in [0, 1].
        marks (np.ndarray): ``[2, 2]`` mark positions in [0, 1].
    """
    named: Dict[str, float]
    texture: np.ndarray
    freckles: np.ndarray
    marks: np.ndarray


def image_traits(traits: np.ndarray, nu: Nuisance) -> ImageTraits:
    """Split a ``[TRAIT_DIM]`` trait vector and add the nuisance's per-image offsets."""
    named = traits[:len(TRAIT_NAMES)]
    if nu.trait_noise is not None:
        named = named + nu.trait_noise
    # Skin texture: the identity's field plus a larger per-image part (blemishes, light),
    # so that the field is a weak cue rather than a 36-number signature.
    texture = _TEXTURE_IDENTITY * traits[_TEXTURE]
    if nu.texture_noise is not None:
        texture = texture + _TEXTURE_IMAGE * nu.texture_noise
    return ImageTraits(
        named=dict(zip(TRAIT_NAMES, named.tolist())),
        texture=texture.reshape(_TEXTURE_GRID, _TEXTURE_GRID),
        freckles=traits[_FRECKLES].reshape(_NUM_FRECKLES, 2),
        marks=traits[_MARKS].reshape(_NUM_MARKS, 2))
