"""SynthFace: a procedural, seeded face data set for trying OAML without downloading faces.

Every face is drawn from two independent random sources:

* **Identity traits** (:meth:`SynthFaceGenerator.identity_traits`): a vector of continuous traits
  drawn once per ``(seed, identity)``. They are spread over the whole face on purpose, with a
  large share in the lower face, so that a medical mask or a niqab removes real identity
  information and the upper face still keeps some:

  ==============  ===========================================================================
  region          traits
  ==============  ===========================================================================
  whole face      face width, cheek fullness, skin lightness and warmth, blotchiness, a
                  low-frequency skin texture field (mixed with a larger per-image field, so it
                  is a weak cue, not a signature)
  upper face      eye spacing, eye width / openness / tilt, iris hue / darkness / size,
                  under-eye shadow, brow thickness / arch / height / length / darkness / slope,
                  forehead height, freckles on the upper cheeks
  lower face      nose length / width / nostrils / bridge / tip, mouth height / width / corner
                  tilt, both lip thicknesses, lip redness / darkness, cupid's bow, jaw width,
                  chin length / width / cleft, nasolabial folds, jaw shadow, stubble shadow,
                  up to two faint marks (lower face only)
  hair            weak: a darkness / warmth offset inside a narrow dark palette and a hairline
                  offset, each smaller than the per-image variation of the same property
  ==============  ===========================================================================

  No trait is a strong binary cue: there are no beards, no high-contrast moles and no hair colour
  classes, which a previous prototype had and which let identity survive occlusion.

* **Nuisance** (:class:`Nuisance`): drawn per image. Small yaw / pitch (features move against
  the outline), the residual of a 5-point alignment (roll, scale, shift), expression (smile,
  open mouth, brow raise, gaze), a per-image jitter of every named trait (``trait_jitter``
  standard deviations; 1.5x that for the :data:`APPEARANCE_TRAITS`: make-up, tan, grooming),
  hair style and colour, background, illumination (gain, colour cast, a directional gradient),
  Gaussian blur, sensor noise and JPEG compression.

Faces are aligned like real crops: the identity's own five landmarks (eye centres, nose tip,
mouth corners, after pose and expression) are fitted to the ArcFace template by a least-squares
similarity, as face detectors' alignment does, so the landmarks of a rendered face sit a few
pixels from :func:`template_points` (identity proportions and pose leave residuals, as in real
aligned data). A renderer also returns the face's true pixel mask: 1 = face skin and features
(eyes, brows, lips). **Hair is not face**, also where it covers the forehead or the face's
sides, and neither are neck and background; this matches face-parsing conventions, where hair is
its own class, and the occluders' "0 = occluder or not face".

Rendering is vectorised OpenCV drawing (anti-aliased polygons at the output resolution, soft
shading drawn at half resolution, blurred and warped once): about 1-2 ms per 112x112 face on
one core (``tools/benchmarks/synthface_throughput.py``).

Seeding: identity traits from ``np.random.default_rng([seed, 1, identity])``; the nuisance of
image ``k`` of an identity from ``np.random.default_rng([seed, 2, identity, k])``
(:func:`nuisance_rng`; the occluded set uses tag 4, :func:`occluded_rng`). Test
identities are the ids from :data:`TEST_ID_OFFSET` on, so they never meet training identities
whatever the training set's size.
"""
import json
import os
import os.path as osp
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmoaml.fileio.image import encode_image
from mmoaml.fileio.verification_bin import dump_verification_bin
from mmoaml.registry import DATASETS, TRANSFORMS
from .base_face_dataset import BaseFaceDataset
from .transforms.face_template import ARCFACE_TEMPLATE_112

__all__ = [
    'SYNTHFACE_VERSION', 'TEST_ID_OFFSET', 'TRAIT_NAMES', 'Nuisance', 'RenderedFace',
    'SynthFaceGenerator', 'SynthFaceDataset', 'write_synthface', 'nuisance_rng',
    'occluded_rng', 'DEFAULT_OCCLUDERS', 'TRAIT_DIM', 'APPEARANCE_TRAITS',
    'DEFAULT_TRAIT_JITTER'
]

#: Bumped whenever a change alters the rendered pixels of a given seed; written to meta.json.
SYNTHFACE_VERSION = '1.1'
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
_T = {name: k for k, name in enumerate(TRAIT_NAMES)}
#: Traits that change more between photos of one person (make-up, tan, grooming, shaving):
#: their per-image jitter is 1.5x ``trait_jitter``; shape traits get 1x.
APPEARANCE_TRAITS = ('skin_lightness', 'skin_warmth', 'skin_blotchiness', 'cheek_blush',
                     'stubble', 'under_eye_shadow', 'brow_darkness', 'lip_redness',
                     'lip_darkness', 'jaw_shadow', 'hair_darkness', 'hair_warmth',
                     'hairline_height')
#: Default ``trait_jitter``; see :class:`SynthFaceGenerator`.
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

_IDENTITY_TAG, _NUISANCE_TAG, _PAIRS_TAG, _OCCLUDED_TAG = 1, 2, 3, 4
#: Fixed-point bits of the vertices handed to cv2 drawing (1/16 px).
_SHIFT = 4
_ONE = 1 << _SHIFT
#: Soft shading is drawn on a grid this many times coarser than the 112 px face frame.
_FIELD_STEP = 2
_FIELD_SIZE = 64


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


@dataclass
class RenderedFace:
    """One rendered face.

    Attributes:
        img (np.ndarray): ``[S, S, 3]`` uint8 BGR.
        face_mask (np.ndarray): ``[S, S]`` float32, 1 = face pixel (skin, eyes, brows, lips),
            0 = hair, neck, background.
        landmarks (np.ndarray): ``[5, 2]`` float32 (x, y) of the eye centres, nose tip and mouth
            corners in the image, ordered like ``ARCFACE_TEMPLATE_112``.
    """
    img: np.ndarray
    face_mask: np.ndarray
    landmarks: np.ndarray


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float ``[K, 2]`` points as cv2 fixed-point vertices (use with ``_SHIFT``)."""
    return np.round(points * _ONE).astype(np.int32)


def _fixed_pt(point) -> Tuple[int, int]:
    """One float point as a cv2 fixed-point vertex."""
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


# Catmull-Rom basis (tension 0.5) for 4 samples per segment, as a [4, 4] weight matrix.
_CR_T = np.linspace(0, 1, 4, endpoint=False)[:, None]
_CR_BASIS = 0.5 * np.hstack([
    -_CR_T**3 + 2 * _CR_T**2 - _CR_T, 3 * _CR_T**3 - 5 * _CR_T**2 + 2,
    -3 * _CR_T**3 + 4 * _CR_T**2 + _CR_T, _CR_T**3 - _CR_T**2
])


def _smooth_closed(points: np.ndarray) -> np.ndarray:
    """Closed Catmull-Rom spline through ``[K, 2]`` control points (4 samples per segment)."""
    idx = (np.arange(len(points))[:, None] + np.arange(-1, 3)[None, :]) % len(points)
    return np.einsum('sj,kjd->ksd', _CR_BASIS, points[idx]).reshape(-1, 2)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    The closed form of the 2-D Procrustes fit with points as complex numbers; the same model as
    the ``SimilarityTransform`` alignment of insightface's ``face_align``.
    """
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    sc, dc = s - s.mean(), d - d.mean()
    a = np.sum(dc * np.conj(sc)) / np.sum(np.abs(sc)**2)
    b = d.mean() - a * s.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _colour(bgr) -> Tuple[float, float, float]:
    """A BGR colour as the float tuple cv2 drawing wants, clipped to [0, 255]."""
    return tuple(min(255.0, max(0.0, float(c))) for c in bgr)


def _blend(top: np.ndarray, bottom: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``top`` over uint8 ``bottom`` with a uint8 alpha (255 = top); returns uint8."""
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    if top.dtype != np.uint8:
        top = np.clip(top, 0, 255).astype(np.uint8)
    return cv2.blendLinear(top, bottom, a, 1 - a)


#: Skin palette along the lightness axis (BGR): deep, medium, light.
_SKIN_DARK = np.array([52.0, 72.0, 108.0])
_SKIN_MID = np.array([100.0, 135.0, 180.0])
_SKIN_LIGHT = np.array([168.0, 192.0, 228.0])
#: Iris colours along the hue axis (BGR): dark brown, brown, hazel, green-grey, grey-blue.
_IRIS_PATH = np.array([[22, 38, 62], [35, 62, 98], [50, 95, 112], [92, 118, 96],
                       [140, 118, 88]], dtype=np.float64)
_TEMPLATE = ARCFACE_TEMPLATE_112.astype(np.float64)
#: Face-frame constants: the column of the face's centre line, the eye line before alignment.
_CX, _EYE_Y = 56.0, 51.6
# Fixed sample positions of the drawn curves.
_U_MOUTH = np.linspace(-1, 1, 13)
_DOME = np.sqrt(np.clip(1 - _U_MOUTH**2, 0, None))
_BOW = np.exp(-(_U_MOUTH / 0.2)**2)
_TEETH = np.abs(_U_MOUTH) < 0.7
_U_LINE = np.linspace(-1, 1, 15)
_U_BROW = np.linspace(0, 1, 9)
_A_EYE = np.linspace(0, np.pi, 9)
_A_CROWN = np.linspace(0, np.pi, 11)


class SynthFaceGenerator:
    """Seeded renderer of aligned synthetic faces (see the module docstring).

    Args:
        seed (int): the data set's seed; identities and images are functions of it.
            Defaults to 0.
        image_size (int): output size ``S`` (square, ``S x S``), the 112 px ArcFace frame
            scaled. Defaults to 112.
        trait_jitter (float): standard deviation of the per-image offset of each named trait
            (make-up, weight, age between photos), in units of the traits' between-identity
            standard deviation; :data:`APPEARANCE_TRAITS` vary 1.5x as much. Defaults to
            :data:`DEFAULT_TRAIT_JITTER` (0.6). Calibration with a converged small CNN (64 px
            input, CosFace, 20 epochs; clean pairs of disjoint test identities): 98.8 % at 0.25
            (600 ids x 12), 92.5 % at 0.5 (600 x 12), 93.8 % at 0.5 and 90.6 % at 0.6
            (1500 x 8). A full-size baseline on more identities scores higher, hence 0.6: room
            to stay below about 97 %. Greying the probe's lower face costs that CNN about 18
            points, so the lower face carries a large share of identity.
    """

    def __init__(self,
                 seed: int = 0,
                 image_size: int = 112,
                 trait_jitter: float = DEFAULT_TRAIT_JITTER) -> None:
        if image_size < 32:
            raise ValueError(f'SynthFaceGenerator: image_size must be >= 32, got {image_size}')
        if trait_jitter < 0:
            raise ValueError(f'SynthFaceGenerator: trait_jitter must be >= 0, got {trait_jitter}')
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.trait_jitter = float(trait_jitter)
        self._unit = self.image_size / 112.0
        size = self.image_size
        bank_rng = np.random.default_rng([self.seed, 0])
        # Sensor noise and hair strands come from fixed banks twice the image size; an image
        # uses a random window of each, which is much cheaper than drawing fresh noise.
        self._noise_bank = bank_rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)
        strands = bank_rng.standard_normal((2 * size, 2 * size)).astype(np.float32)
        strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.7 * self._unit,
                                   sigmaY=5.0 * self._unit)
        self._strands = (1.0 + 0.22 * strands / strands.std()).astype(np.float32)
        ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
        self._ramp_x, self._ramp_y = ramp[None, :], ramp[:, None]

    # ------------------------------------------------------------------ identities and images

    def identity_traits(self, identity_id: int) -> np.ndarray:
        """The trait vector of identity ``identity_id``: ``[TRAIT_DIM]`` float64.

        Named traits (standard normal, clipped to +-2.5), then a ``6 x 6`` skin texture field,
        then freckle and mark positions (uniform in [0, 1]).
        """
        rng = np.random.default_rng([self.seed, _IDENTITY_TAG, int(identity_id)])
        named = np.clip(rng.standard_normal(len(TRAIT_NAMES)), -2.5, 2.5)
        texture = rng.standard_normal(_TEXTURE_GRID**2)
        spots = rng.random(2 * (_NUM_FRECKLES + _NUM_MARKS))
        return np.concatenate([named, texture, spots])

    def render_identity(self, identity_id: int, image_index: int,
                        neutral: bool = False) -> RenderedFace:
        """Render image ``image_index`` of identity ``identity_id`` (see :func:`nuisance_rng`).

        Args:
            neutral (bool): ignore ``image_index`` and render the neutral face.
        """
        rng = None if neutral else nuisance_rng(self.seed, identity_id, image_index)
        return self.render_face(self.identity_traits(identity_id), rng)

    def render(self, traits: np.ndarray, nuisance_rng: Optional[np.random.Generator] = None,
               return_mask: bool = False):
        """Render one face.

        Args:
            traits (np.ndarray): a vector from :meth:`identity_traits`.
            nuisance_rng (np.random.Generator, optional): draws the image's nuisance; None =
                the neutral face (:meth:`Nuisance.neutral`).
            return_mask (bool): also return the face mask. Defaults to False.

        Returns:
            np.ndarray | tuple: ``[S, S, 3]`` uint8 BGR, or ``(img, face_mask)`` with
            ``face_mask`` ``[S, S]`` float32 (1 = face).
        """
        face = self.render_face(traits, nuisance_rng)
        return (face.img, face.face_mask) if return_mask else face.img

    def render_face(self, traits: np.ndarray,
                    nuisance_rng: Optional[np.random.Generator] = None) -> RenderedFace:
        """Render one face with its mask and landmarks; arguments as :meth:`render`."""
        traits = np.asarray(traits, dtype=np.float64)
        if traits.shape != (TRAIT_DIM, ):
            raise ValueError(f'SynthFaceGenerator.render: traits must have shape ({TRAIT_DIM},) '
                             f'(from identity_traits), got {traits.shape}')
        if nuisance_rng is None:
            nu = Nuisance.neutral()
        else:
            nu = Nuisance.draw(nuisance_rng, self.trait_jitter, self.image_size)
        return _FaceRenderer(self, traits, nu).run()


class _FaceRenderer:
    """Draws one face; holds the per-image geometry so that the drawing steps stay short.

    Geometry is built in the *face frame*: 112 px units, centre column ``_CX``, eyes on
    ``_EYE_Y`` before alignment. ``self.m`` maps face-frame points to output pixels.
    """

    def __init__(self, gen: SynthFaceGenerator, traits: np.ndarray, nu: Nuisance) -> None:
        self.gen, self.nu = gen, nu
        named = traits[:len(TRAIT_NAMES)]
        if nu.trait_noise is not None:
            named = named + nu.trait_noise
        self.z = named.tolist()
        # Skin texture: the identity's field plus a larger per-image part (blemishes, light),
        # so that the field is a weak cue rather than a 36-number signature.
        texture = _TEXTURE_IDENTITY * traits[_TEXTURE]
        if nu.texture_noise is not None:
            texture = texture + _TEXTURE_IMAGE * nu.texture_noise
        self.texture = texture.reshape(_TEXTURE_GRID, _TEXTURE_GRID)
        self.freckles = traits[_FRECKLES].reshape(_NUM_FRECKLES, 2)
        self.marks = traits[_MARKS].reshape(_NUM_MARKS, 2)
        self.size = gen.image_size
        self.unit = gen._unit

    def t(self, name: str) -> float:
        return self.z[_T[name]]

    # ------------------------------------------------------------------ geometry

    def _layout(self) -> None:
        t, nu = self.t, self.nu
        half_iod = 17.6 * (1 + 0.035 * t('eye_spacing'))
        nose_y = 71.7 + 1.6 * t('nose_length')
        mouth_y = 92.3 + 1.6 * t('mouth_height')
        self.mouth_hw = 14.6 * (1 + 0.05 * t('mouth_width')) * (1 + 0.1 * nu.smile)
        self.face_hw = 38.5 * (1 + 0.03 * t('face_width'))
        self.jaw_hw = self.face_hw * (0.8 + 0.03 * t('jaw_width'))
        self.chin_y = mouth_y + 17.0 + 1.5 * t('chin_length') + 1.2 * nu.mouth_open
        self.chin_hw = 8.0 + 1.6 * t('chin_width')
        self.brow_gap = 9.5 + 0.8 * t('brow_height') + 1.5 * nu.brow_raise
        # Head turn: features move with their depth (nose tip most), the outline moves back.
        self.turn = np.array([2.6 * nu.yaw, 2.0 * nu.pitch])
        self.eyes = (np.array([[_CX - half_iod, _EYE_Y], [_CX + half_iod, _EYE_Y]]) +
                     0.35 * self.turn)
        self.nose = np.array([_CX, nose_y]) + self.turn
        self.mouth_c = np.array([_CX, mouth_y]) + 0.45 * self.turn
        self.corner_lift = 2.2 * nu.smile + 0.5 * t('mouth_corner_tilt')
        corners = self.mouth_c + np.array([[-self.mouth_hw, -self.corner_lift],
                                           [self.mouth_hw, -self.corner_lift]])
        self.landmarks_face = np.vstack([self.eyes, self.nose[None], corners])
        # Alignment: fit the landmarks to the template like a detector-based crop, then add the
        # detector's residual (roll, scale, shift) about the crop centre.
        align = _similarity(self.landmarks_face, _TEMPLATE)
        theta = np.deg2rad(nu.roll)
        rot = nu.scale * np.array([[np.cos(theta), -np.sin(theta)],
                                   [np.sin(theta), np.cos(theta)]])
        centre = np.array([56.0, 60.0])
        residual = np.hstack([rot, (centre - rot @ centre + np.asarray(nu.shift))[:, None]])
        m = (residual[:, :2] @ align[:, :2], residual[:, :2] @ align[:, 2] + residual[:, 2])
        self.lin = m[0] * self.unit
        self.off = m[1] * self.unit
        self.scale_px = float(np.sqrt(abs(np.linalg.det(self.lin))))

    def to_img(self, pts: np.ndarray) -> np.ndarray:
        """Face-frame ``[K, 2]`` points to output pixels."""
        return pts @ self.lin.T + self.off

    def outer(self, pts: np.ndarray) -> np.ndarray:
        """Head turn of the outline and hair: the far side narrows, the whole moves back."""
        pts = np.array(pts, dtype=np.float64)
        dx = pts[:, 0] - _CX
        pts[:, 0] = _CX + dx * (1 - 0.07 * self.nu.yaw * np.sign(dx))
        return pts - 0.4 * self.turn

    def _outline(self) -> np.ndarray:
        """Closed face outline (face frame) from the top of the forehead round the chin."""
        t = self.t
        fw, jw = self.face_hw, self.jaw_hw
        top = _EYE_Y - 40.0 - 2.0 * t('forehead_height')
        cheek = 0.5 * (self.nose[1] + self.mouth_c[1])
        right = np.array([
            [0.55 * fw, top + 3],
            [0.88 * fw, _EYE_Y - 24],
            [0.98 * fw, _EYE_Y - 6],
            [fw, _EYE_Y + 8],
            [0.5 * (fw + jw) + 1.5 * t('cheek_fullness'), cheek],
            [jw, self.mouth_c[1] + 4],
            [0.5 * (jw + self.chin_hw) + 2, self.chin_y - 6],
            [self.chin_hw, self.chin_y - 1.2],
        ])
        left = right[::-1] * [-1, 1]
        ctrl = np.vstack([[0.0, top], right, [[0.0, self.chin_y]], left]) + [_CX, 0.0]
        return self.outer(_smooth_closed(ctrl))

    # ------------------------------------------------------------------ drawing

    def run(self) -> RenderedFace:
        self._layout()
        s, t = self.size, self.t
        light = min(1.0, max(0.0, 0.55 + 0.2 * t('skin_lightness')))
        skin = (_mix(_SKIN_DARK, _SKIN_MID, light / 0.5) if light < 0.5 else
                _mix(_SKIN_MID, _SKIN_LIGHT, (light - 0.5) / 0.5))
        self.skin = skin + np.array([-6.0, 0.0, 6.0]) * t('skin_warmth')
        outline = self._outline()
        img = self._background()
        hair = self._hair_layer()
        back, front = self._hair_alphas(outline)
        img = _blend(hair, img, back)
        self._draw_neck_and_ears(img)
        face_alpha = np.zeros((s, s), np.uint8)
        cv2.fillPoly(face_alpha, [_fixed(self.to_img(outline))], 255, cv2.LINE_AA, _SHIFT)
        img = _blend(self._skin_image(outline), img, face_alpha)
        self._draw_spots(img)
        self._draw_brows(img)
        self._draw_eyes(img)
        self._draw_nose(img)
        self._draw_mouth(img)
        img = _blend(hair, img, front)
        face_mask = ((face_alpha >= 128) & (front < 128)).astype(np.float32)
        img = self._capture(img)
        return RenderedFace(img, face_mask, self.to_img(self.landmarks_face).astype(np.float32))

    def _background(self) -> np.ndarray:
        bg = cv2.resize(self.nu.background, (self.size, self.size),
                        interpolation=cv2.INTER_LINEAR)
        return np.clip(bg, 0, 255).astype(np.uint8)

    def _hair_layer(self) -> np.ndarray:
        """Full-frame hair colour with strands: ``[S, S, 3]`` float32."""
        t, nu = self.t, self.nu
        # A narrow dark palette; identity moves it less than the per-image draw does.
        dark = 0.5 + 0.06 * t('hair_darkness') + 0.15 * nu.hair_darkness
        warm = 0.35 + 0.06 * t('hair_warmth') + 0.15 * nu.hair_warmth
        level = 20 + 60 * min(1.0, max(0.0, 1 - dark))
        colour = (level * (0.9 - 0.25 * warm), level * 1.0, level * (1.05 + 0.3 * warm))
        s = self.size
        oy, ox = self.nu.noise_offset
        strands = self.gen._strands[oy:oy + s, ox:ox + s]
        return cv2.merge([strands * np.float32(c) for c in colour])

    def _hair_alphas(self, outline: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Alpha (uint8) of the hair behind the head and of the hair over the face."""
        nu, t = self.nu, self.t
        s = self.size
        fw, vol = self.face_hw, nu.hair_volume
        top = float(outline[:, 1].min())
        hairline_y = _EYE_Y - 27.0 - 1.0 * t('hairline_height') + nu.hairline
        hairline_y += nu.fringe * (_EYE_Y - 17.0 - hairline_y)
        # The hairline drops to the temples and dips (a parting) at ``part``.
        temple_y = _EYE_Y - 10.0 + 0.3 * nu.side_hair
        line_y = hairline_y + (temple_y - hairline_y) * np.abs(_U_LINE)**2.2
        line_y -= 3.0 * np.exp(-((_U_LINE - nu.part) / 0.25)**2) * (1 - nu.fringe)
        line = np.stack([_CX + _U_LINE * 0.97 * fw, line_y], 1)
        side = _EYE_Y + nu.side_hair
        crown_y = _EYE_Y - 12.0
        crown = np.stack([_CX + (fw + vol) * np.cos(_A_CROWN),
                          crown_y - (crown_y - top + vol + 3) * np.sin(_A_CROWN)], 1)
        front_poly = np.vstack([[[_CX - fw - vol, side + 3], [_CX - fw - 0.5, side]], line,
                                [[_CX + fw + 0.5, side], [_CX + fw + vol, side + 3]], crown])
        length = _EYE_Y + nu.hair_length
        back_poly = np.vstack([crown, [[_CX - fw - vol - 2, length], [_CX - fw + 6, length + 5],
                                       [_CX + fw - 6, length + 5], [_CX + fw + vol + 2, length]]])
        back = np.zeros((s, s), np.uint8)
        front = np.zeros((s, s), np.uint8)
        cv2.fillPoly(back, [_fixed(self.to_img(self.outer(back_poly)))], 255, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(front, [_fixed(self.to_img(self.outer(front_poly)))], 255, cv2.LINE_AA,
                     _SHIFT)
        return back, front

    def _draw_neck_and_ears(self, img: np.ndarray) -> None:
        jw, fw = self.jaw_hw, self.face_hw
        y0 = self.mouth_c[1]
        neck = np.array([[_CX - 0.62 * jw, y0], [_CX + 0.62 * jw, y0], [_CX + 0.72 * jw, 140],
                         [_CX - 0.72 * jw, 140]])
        cv2.fillPoly(img, [_fixed(self.to_img(self.outer(neck)))], _colour(self.skin * 0.68),
                     cv2.LINE_AA, _SHIFT)
        ear_y = 0.5 * (_EYE_Y + self.nose[1])
        ears = self.to_img(self.outer([[_CX - fw + 0.5, ear_y], [_CX + fw - 0.5, ear_y]]))
        axes = (int(4.2 * self.scale_px * _ONE), int(10 * self.scale_px * _ONE))
        for side, centre in zip((-1, 1), ears):
            cv2.ellipse(img, _fixed_pt(centre), axes, self.nu.roll + side * 8, 0, 360,
                        _colour(self.skin * 0.82), -1, cv2.LINE_AA, _SHIFT)

    def _skin_image(self, outline: np.ndarray) -> np.ndarray:
        """The face's skin (colour, texture, identity shading), warped to the output frame.

        Shading is drawn as hard shapes on a coarse grid (``_FIELD_STEP`` face-frame px per
        cell), blurred once and warped once: cheaper than soft shapes at full resolution.
        """
        t, nu = self.t, self.nu
        n, step, origin = _FIELD_SIZE, _FIELD_STEP, -8.0
        shade = np.ones((n, n), np.float32)

        def cell(pts):
            return _fixed((np.asarray(pts, np.float64) - origin) / step)

        def line(pts, value, width):
            cv2.polylines(shade, [cell(pts)], False, float(value),
                          max(1, int(round(width / step))), cv2.LINE_8, _SHIFT)

        def ellipse(centre, axes, value):
            cv2.ellipse(shade, tuple(cell([centre])[0]),
                        (max(1, int(axes[0] / step * _ONE)), max(1, int(axes[1] / step * _ONE))),
                        0, 0, 360, float(value), -1, cv2.LINE_8, _SHIFT)

        # 3-D roundness: the outline darkens, the forehead and cheekbones catch light.
        line(np.vstack([outline, outline[:1]]), 0.84 - 0.05 * t('jaw_shadow'), 5)
        ellipse((_CX, 30), (18, 8), 1.06)
        nose, mouth = self.nose, self.mouth_c
        depth = 0.06 + 0.025 * t('nasolabial_depth') + 0.04 * nu.smile
        for side, eye in zip((-1, 1), self.eyes):
            ellipse((eye[0] + side * 8, eye[1] + 12), (8, 4), 1.05 + 0.02 * nu.smile)
            ellipse((eye[0], eye[1] + 5), (6, 2.5), 0.93 - 0.03 * t('under_eye_shadow'))
            wing = nose + [side * 9, -1]
            corner = mouth + [side * (self.mouth_hw + 2), 1 - self.corner_lift]
            line(np.array([wing, wing + [side * 3, 6], corner]), 1 - depth, 2.5)
            bridge = np.array([[_CX + side * 3.5, 56.0], [_CX + side * 4.5, nose[1] - 6]])
            line(bridge + 0.7 * self.turn, 0.94 - 0.02 * t('bridge_width'), 2.5)
        # Nose: bright ridge and tip, shadow below; lower-lip shadow; chin cleft.
        line(np.array([[_CX, 56.0], [_CX, nose[1] - 3]]) + 0.8 * self.turn, 1.06, 2)
        tip = 2.5 * (1 + 0.12 * t('nose_tip_size'))
        ellipse(nose + [0, -1.5], (tip, tip * 0.8), 1.09)
        ellipse(nose + [0, 4.5], (6, 1.6), 0.86)
        ellipse((mouth[0], mouth[1] + 7 + 2 * nu.mouth_open), (6, 1.5), 0.9)
        cleft = t('chin_cleft') - 0.3
        if cleft > 0:
            ellipse((_CX, self.chin_y - 5), (0.8, 2.5), 1 - 0.06 * cleft)
        shade = cv2.GaussianBlur(shade, (0, 0), 1.1)

        # Colour field: + = cheek blush (redder), - = stubble shadow (darker, cooler).
        tint = np.zeros((n, n), np.float32)
        amount = max(0.0, 0.25 + 0.12 * t('cheek_blush') + 0.1 * nu.smile)
        for side in (-1, 1):
            cv2.ellipse(tint, tuple(cell([[_CX + side * 21, nose[1] + 2]])[0]),
                        (int(8 / step * _ONE), int(5 / step * _ONE)), 0, 0, 360, amount, -1,
                        cv2.LINE_8, _SHIFT)
        stubble = 0.12 * (t('stubble') - 0.5)
        if stubble > 0:
            jaw = outline[outline[:, 1] > nose[1] + 8]
            region = np.vstack([[nose + [-12, 6], nose + [12, 6]], jaw])
            cv2.fillPoly(tint, [cv2.convexHull(cell(region))], -stubble, cv2.LINE_8, _SHIFT)
        tint = cv2.GaussianBlur(tint, (0, 0), 2.0)

        texture = cv2.resize(self.texture.astype(np.float32), (n, n),
                             interpolation=cv2.INTER_CUBIC)
        gain = (1 + np.float32(0.03 * (1 + 0.35 * t('skin_blotchiness'))) * texture) * shade
        red = np.maximum(tint, 0)
        dark = 1 - np.maximum(-tint, 0)
        b, g, r = (float(c) for c in self.skin)
        field_img = cv2.merge([gain * b * dark - 18 * red, gain * g * dark - 16 * red,
                               gain * r * dark + 14 * red])
        # Output pixel = lin @ face-frame point + off; face-frame point = origin + step * cell.
        full = np.hstack([self.lin * step, (self.lin @ [origin, origin] + self.off)[:, None]])
        return cv2.warpAffine(field_img, full, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def _draw_spots(self, img: np.ndarray) -> None:
        """Freckles (cheeks and nose, faint) and marks (lower face only, faint)."""
        t = self.t
        count = int(round(_NUM_FRECKLES * min(1.0, max(0.0, (t('freckle_density') - 0.6) / 1.6))))
        if count:
            f = self.freckles[:count]
            pts = np.stack([_CX + (2 * f[:, 0] - 1) * 26, 58 + f[:, 1] * (self.nose[1] + 6 - 58)],
                           1)
            radius = int(0.55 * self.scale_px * _ONE)
            colour = _colour(self.skin * 0.86)
            for p in self.to_img(pts):
                cv2.circle(img, _fixed_pt(p), radius, colour, -1, cv2.LINE_AA, _SHIFT)
        for k, (u, v) in enumerate(self.marks):
            strength = min(1.5, t(f'mark_strength_{k + 1}') - 0.8)
            if strength <= 0:
                continue
            top = self.nose[1] + 6
            y = top + v * (self.chin_y - 8 - top)
            x = _CX + (u * 2 - 1) * 0.75 * self.jaw_hw
            if abs(y - self.mouth_c[1]) < 7 and abs(x - _CX) < self.mouth_hw + 3:
                x = _CX + (1 if x >= _CX else -1) * (self.mouth_hw + 4)
            p = self.to_img(np.array([[x, y]]))[0]
            cv2.circle(img, _fixed_pt(p), int((0.6 + 0.35 * strength) * self.scale_px * _ONE),
                       _colour(self.skin * (0.86 - 0.08 * strength)), -1, cv2.LINE_AA, _SHIFT)

    def _draw_brows(self, img: np.ndarray) -> None:
        t, nu = self.t, self.nu
        length = 16.0 * (1 + 0.07 * t('brow_length'))
        arch = 1.6 + 0.6 * t('brow_arch') + 0.5 * nu.brow_raise
        thick = 2.4 * (1 + 0.15 * t('brow_thickness'))
        slope = 0.9 * t('brow_slope')
        darkness = min(0.8, max(0.2, 0.5 + 0.1 * t('brow_darkness')))
        colour = _colour(_mix(self.skin, [28, 32, 40], darkness))
        u = _U_BROW
        rise = (self.brow_gap + arch * (1 - ((u - 0.6) / 0.6)**2) + slope * (u - 0.4) -
                0.8 * nu.brow_raise * (1 - u))
        half = 0.5 * thick * (1.15 - 0.6 * u)
        for side, eye in zip((-1, 1), self.eyes):
            # side -1 is the image-left eye; a brow runs from its inner end outwards.
            x = eye[0] - side * 0.38 * length + side * u * length + 0.1 * self.turn[0]
            y = eye[1] - rise + 0.1 * self.turn[1]
            poly = np.vstack([np.stack([x, y - half], 1), np.stack([x[::-1], (y + half)[::-1]], 1)])
            cv2.fillPoly(img, [_fixed(self.to_img(poly))], colour, cv2.LINE_AA, _SHIFT)

    def _draw_eyes(self, img: np.ndarray) -> None:
        t, nu = self.t, self.nu
        half_w = 6.3 * (1 + 0.06 * t('eye_width'))
        upper_h = 3.1 * (1 + 0.12 * t('eye_openness')) * (1 - 0.25 * nu.smile)
        lower_h = 1.8 * (1 + 0.1 * t('eye_openness')) * (1 - 0.2 * nu.smile)
        tilt = np.deg2rad(4.0 * t('eye_tilt'))
        hue = min(len(_IRIS_PATH) - 1.001, max(0.0, 1.2 + 0.9 * t('iris_hue')))
        lo = int(hue)
        iris_col = _mix(_IRIS_PATH[lo], _IRIS_PATH[lo + 1], hue - lo)
        iris_col = iris_col * (1 - 0.12 * t('iris_darkness'))
        iris_r = int(3.0 * (1 + 0.06 * t('iris_size')) * self.scale_px * _ONE)
        lash = _colour(_mix(self.skin, [20, 22, 28], 0.75))
        crease = _colour(self.skin * 0.8)
        sclera = _colour(_mix([205, 212, 222], self.skin, 0.15))
        lid_width = max(1, int(round(self.scale_px)))
        cos, sin = np.cos(_A_EYE), np.sin(_A_EYE)
        gaze = np.array([nu.gaze[0] * half_w * 0.4, nu.gaze[1] * upper_h * 0.3])
        for side, eye in zip((-1, 1), self.eyes):
            # Outer corners lift with tilt; the upper lid peaks slightly inward of the centre.
            ang = -side * tilt
            rot = np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
            upper = np.stack([half_w * cos - side * 0.6 * sin, -upper_h * sin], 1) @ rot
            lower = np.stack([-half_w * cos, lower_h * sin], 1) @ rot
            outline = self.to_img(np.vstack([upper, lower]) + eye)
            iris_c = self.to_img((eye + gaze)[None])[0]
            x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - 2, 0)
            x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + 3, self.size)
            if x1 <= x0 or y1 <= y0:
                continue
            # Draw sclera and iris unclipped in a small box, then keep them inside the lids.
            roi = img[y0:y1, x0:x1]
            drawn = np.empty_like(roi)
            drawn[:] = sclera
            offset = np.array([x0, y0])
            ic = _fixed_pt(iris_c - offset)
            cv2.circle(drawn, ic, iris_r, _colour(iris_col), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(drawn, ic, iris_r, _colour(iris_col * 0.55), 1, cv2.LINE_AA, _SHIFT)
            cv2.circle(drawn, ic, int(0.42 * iris_r), (18, 18, 22), -1, cv2.LINE_AA, _SHIFT)
            glint = (ic[0] - int(0.3 * iris_r), ic[1] - int(0.35 * iris_r))
            cv2.circle(drawn, glint, int(0.22 * iris_r), (235, 240, 245), -1, cv2.LINE_AA,
                       _SHIFT)
            alpha = np.zeros(roi.shape[:2], np.uint8)
            cv2.fillPoly(alpha, [_fixed(outline - offset)], 255, cv2.LINE_AA, _SHIFT)
            img[y0:y1, x0:x1] = _blend(drawn, roi, alpha)
            cv2.polylines(img, [_fixed(outline[:9])], False, lash, lid_width, cv2.LINE_AA, _SHIFT)
            fold = self.to_img(upper[1:-1] + eye + [0, -2.4])
            cv2.polylines(img, [_fixed(fold)], False, crease, 1, cv2.LINE_AA, _SHIFT)

    def _draw_nose(self, img: np.ndarray) -> None:
        t = self.t
        half_w = 8.0 * (1 + 0.07 * t('nose_width'))
        size = (1.0 + 0.15 * t('nostril_size')) * self.scale_px * _ONE
        nostril = _colour(self.skin * 0.42)
        alar = _colour(self.skin * 0.72)
        axes = (int(1.7 * size), int(0.9 * size))
        for side in (-1, 1):
            c = self.to_img((self.nose + [side * 0.4 * half_w, 2.0])[None])[0]
            cv2.ellipse(img, _fixed_pt(c), axes, float(side * 20 + self.nu.roll), 0, 360,
                        nostril, -1, cv2.LINE_AA, _SHIFT)
            wing = self.nose + np.array([[side * 0.8 * half_w, -3.5], [side * half_w, -0.5],
                                         [side * 0.85 * half_w, 2.0], [side * 0.55 * half_w, 2.8]])
            cv2.polylines(img, [_fixed(self.to_img(wing))], False, alar, 1, cv2.LINE_AA, _SHIFT)

    def _draw_mouth(self, img: np.ndarray) -> None:
        t, nu = self.t, self.nu
        cx, my = self.mouth_c
        u = _U_MOUTH
        # Lip line through the corners (the landmarks); its centre drops a little in a smile.
        line = my - self.corner_lift * u**2 + 0.4 * nu.smile * (1 - u**2)
        upper_t = 3.0 * (1 + 0.16 * t('upper_lip'))
        lower_t = 3.8 * (1 + 0.16 * t('lower_lip'))
        bow = 0.9 * (1 + 0.4 * t('cupid_bow'))
        gap = 4.5 * nu.mouth_open * _DOME
        top = line - upper_t * _DOME**0.7 + bow * _BOW
        bottom_line = line + gap
        bottom = bottom_line + lower_t * _DOME**0.8
        xs = cx + u * self.mouth_hw
        red = min(0.7, max(0.1, 0.4 + 0.12 * t('lip_redness')))
        lip = _mix(self.skin, np.array([78, 68, 168]) * (1 - 0.15 * t('lip_darkness')), red)

        def band(a, b):
            pts = np.vstack([np.stack([xs, a], 1), np.stack([xs[::-1], b[::-1]], 1)])
            return [_fixed(self.to_img(pts))]

        if nu.mouth_open > 0:
            cv2.fillPoly(img, band(line, bottom_line), (40, 32, 66), cv2.LINE_AA, _SHIFT)
            cv2.fillPoly(img, band(line, line + np.minimum(gap, 2.2) * _TEETH), (196, 205, 212),
                         cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(img, band(top, line), _colour(lip * 0.92), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(img, band(bottom_line, bottom), _colour(lip * 1.05), cv2.LINE_AA, _SHIFT)
        if nu.mouth_open == 0:
            pts = self.to_img(np.stack([xs, line], 1))
            cv2.polylines(img, [_fixed(pts)], False, _colour(lip * 0.55), 1, cv2.LINE_AA, _SHIFT)

    def _capture(self, img: np.ndarray) -> np.ndarray:
        """Illumination, blur, sensor noise and JPEG compression."""
        nu, gen, s = self.nu, self.gen, self.size
        out = img.astype(np.float32)
        if nu.light_strength > 0 or nu.gain != 1 or nu.cast != (1.0, 1.0, 1.0):
            theta = np.deg2rad(nu.light_angle)
            light = (np.float32(2 * nu.light_strength * np.cos(theta)) * gen._ramp_x +
                     np.float32(2 * nu.light_strength * np.sin(theta)) * gen._ramp_y + 1)
            light *= np.float32(nu.gain)
            out = cv2.multiply(out, cv2.merge([light * np.float32(c) for c in nu.cast]))
        if nu.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), nu.blur_sigma * self.unit)
        if nu.noise_sigma > 0:
            oy, ox = nu.noise_offset
            out += np.float32(nu.noise_sigma) * gen._noise_bank[oy:oy + s, ox:ox + s]
        img = np.clip(out, 0, 255).astype(np.uint8)
        if nu.jpeg_quality:
            _, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, nu.jpeg_quality])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img


# ---------------------------------------------------------------------- in-memory data set


@DATASETS.register_module()
class SynthFaceDataset(BaseFaceDataset):
    """SynthFace faces rendered on the fly: ``num_identities x images_per_identity`` samples.

    Sample ``i`` is image ``k = i % images_per_identity`` of identity
    ``j = i // images_per_identity`` (``gt_label = j``); the identity's id is ``j`` for the
    ``'train'`` split and ``TEST_ID_OFFSET + j`` for ``'test'`` (disjoint identities). Rendering
    is lazy and a pure function of ``(seed, identity id, k)``, so labels are known without
    rendering and every worker, epoch and process sees the same image. The data infos hold
    ``img_path = 'synthface#<i>'``, ``gt_label``, ``identity_id`` and ``image_index``; the
    pipeline receives ``img`` (``S x S x 3`` uint8 BGR) plus those and ``sample_idx``.

    The images equal those :func:`write_synthface` writes for the same seed (before the
    writer's JPEG encoding), so a quick experiment in memory and a run on the written folders
    see the same faces.

    Args:
        num_identities (int): identities. Defaults to 100.
        images_per_identity (int): images per identity. Defaults to 10.
        seed (int): the generator's seed. Defaults to 0.
        split (str): ``'train'`` or ``'test'`` (identities from ``TEST_ID_OFFSET``).
            Defaults to ``'train'``.
        image_size (int): output size. Defaults to 112.
        trait_jitter (float): see :class:`SynthFaceGenerator`. Defaults to 0.6.
        with_face_mask (bool): also set ``results['visibility_mask']`` to the rendered face's
            true mask (1 = face; hair, neck and background 0). Off by default, so that the
            set behaves like a face folder of real photos (which has no masks; the pipeline
            then uses the face-region prior). Defaults to False.
        **kwargs: ``BaseDataset`` arguments (``pipeline``, ``indices``, ``lazy_init``,
            ``test_mode``, ...).

    Examples:
        >>> train = dict(type='SynthFaceDataset', num_identities=500, images_per_identity=20,
        ...              pipeline=[dict(type='FaceAugmenter'), dict(type='PackFaceInputs')])
    """

    def __init__(self,
                 num_identities: int = 100,
                 images_per_identity: int = 10,
                 seed: int = 0,
                 split: str = 'train',
                 image_size: int = 112,
                 trait_jitter: float = DEFAULT_TRAIT_JITTER,
                 with_face_mask: bool = False,
                 **kwargs) -> None:
        if num_identities < 1 or images_per_identity < 1:
            raise ValueError(f'SynthFaceDataset: num_identities and images_per_identity must be '
                             f'>= 1, got {num_identities} and {images_per_identity}')
        if split not in ('train', 'test'):
            raise ValueError(f"SynthFaceDataset: split must be 'train' or 'test', got {split!r}")
        if kwargs.get('ann_file') or kwargs.get('data_root'):
            raise ValueError('SynthFaceDataset renders its images; ann_file and data_root are '
                             'not used')
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.seed = int(seed)
        self.split = split
        self.image_size = int(image_size)
        self.trait_jitter = float(trait_jitter)
        self.with_face_mask = bool(with_face_mask)
        # Checked here, so that a bad size or jitter fails at construction, not in a worker.
        SynthFaceGenerator(self.seed, self.image_size, self.trait_jitter)
        super().__init__(ann_file='', **kwargs)

    @property
    def id_offset(self) -> int:
        """Identity id of label 0."""
        return TEST_ID_OFFSET if self.split == 'test' else 0

    def load_data_list(self) -> List[dict]:
        """One data info per image; no image is rendered."""
        ipi, offset = self.images_per_identity, self.id_offset
        self._metainfo['classes'] = tuple(
            str(offset + j) for j in range(self.num_identities))
        return [
            dict(img_path=f'synthface#{i}', gt_label=i // ipi, identity_id=offset + i // ipi,
                 image_index=i % ipi) for i in range(self.num_identities * ipi)
        ]

    def load_sample(self, data_info: dict) -> dict:
        """Render the image (and, with ``with_face_mask``, its face mask)."""
        gen = _cached_generator(self.seed, self.image_size, self.trait_jitter)
        face = gen.render_identity(data_info['identity_id'], data_info['image_index'])
        data_info['img'] = face.img
        data_info['img_shape'] = face.img.shape[:2]
        data_info['ori_shape'] = face.img.shape[:2]
        if self.with_face_mask:
            data_info['visibility_mask'] = face.face_mask
        return data_info


@lru_cache(maxsize=4)
def _cached_generator(seed: int, image_size: int, trait_jitter: float) -> SynthFaceGenerator:
    """One generator per process and setting (its noise banks are built once)."""
    return SynthFaceGenerator(seed, image_size, trait_jitter)


# ---------------------------------------------------------------------- writer

#: Default occluder mix of the occluded set: registered transform name -> probability.
DEFAULT_OCCLUDERS = (('NiqabOcclusion', 0.4), ('MedicalMaskOcclusion', 0.3),
                     ('SunglassesOcclusion', 0.15), ('RandomOcclusion', 0.15))


def _id_name(identity_id: int, width: int) -> str:
    return f'{identity_id:0{width}d}'


def _write(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def _write_train_identity(task: tuple) -> int:
    """Render and write ``train/<id>/<k>.jpg`` for one identity; returns the image count."""
    out_dir, identity, count, width, seed, size, jitter, quality = task
    gen = _cached_generator(seed, size, jitter)
    folder = osp.join(out_dir, 'train', _id_name(identity, width))
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        img = gen.render_identity(identity, k).img
        _write(osp.join(folder, f'{k}.jpg'), encode_image(img, '.jpg', quality))
    return count


@lru_cache(maxsize=4)
def _cached_occluders(names: Tuple[str, ...], seed: int) -> tuple:
    # prob=1: every image of the occluded set carries its occluder (some occluders default to
    # an augmentation probability below 1).
    return tuple(TRANSFORMS.build(dict(type=name, seed=seed, prob=1.0)) for name in names)


def _write_occluded_identity(task: tuple) -> List[dict]:
    """Render, occlude and write ``occluded/{images,masks}/<id>/<k>`` for one identity.

    Each image starts from its true face mask; one occluder, drawn from the mix, is applied
    (the occluders' own per-sample seeding makes it reproducible). Returns one record per image.
    """
    (out_dir, identity, count, width, seed, size, jitter, quality, names, probs) = task
    gen = _cached_generator(seed, size, jitter)
    occluders = _cached_occluders(names, seed)
    name = _id_name(identity, width)
    img_dir = osp.join(out_dir, 'occluded', 'images', name)
    mask_dir = osp.join(out_dir, 'occluded', 'masks', name)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    traits = gen.identity_traits(identity)
    records = []
    for k in range(count):
        rng = occluded_rng(seed, identity, k)
        face = gen.render_face(traits, rng)
        choice = int(rng.choice(len(names), p=probs))
        results = dict(img=face.img, visibility_mask=face.face_mask,
                       sample_idx=identity * count + k,
                       img_path=osp.join(img_dir, f'{k}.jpg'))
        results = occluders[choice](results)
        mask = (np.asarray(results['visibility_mask']) >= 0.5).astype(np.uint8) * 255
        _write(osp.join(img_dir, f'{k}.jpg'), encode_image(results['img'], '.jpg', quality))
        _write(osp.join(mask_dir, f'{k}.png'), encode_image(mask, '.png'))
        records.append(dict(identity=identity, image=k, occluder=results['occluder']))
    return records


def _render_test_image(task: tuple) -> Tuple[Tuple[int, int], bytes]:
    identity, k, seed, size, jitter, quality = task
    img = _cached_generator(seed, size, jitter).render_identity(identity, k).img
    return (identity, k), encode_image(img, '.jpg', quality)


def _pair_list(num_pairs: int, num_test_ids: int, images_per_id: int,
               seed: int) -> List[Tuple[int, int, int, int, bool]]:
    """``num_pairs`` distinct pairs ``(id_a, k_a, id_b, k_b, issame)``, test ids 0-based.

    Half same-identity (two different images), half different-identity; listed as alternating
    same/different slots in a random order per slot pair, so every contiguous fold of an even
    number of pairs is balanced.
    """
    if num_pairs % 2:
        raise ValueError(f'write_synthface: num_pairs must be even (half same, half different), '
                         f'got {num_pairs}')
    half = num_pairs // 2
    max_same = num_test_ids * images_per_id * (images_per_id - 1) // 2
    max_diff = (num_test_ids * (num_test_ids - 1) // 2) * images_per_id**2
    if half > max_same or half > max_diff:
        raise ValueError(f'write_synthface: {num_pairs} pairs need {half} distinct same and '
                         f'different pairs; {num_test_ids} test identities x {images_per_id} '
                         f'images allow {max_same} same and {max_diff} different pairs')
    rng = np.random.default_rng([seed, _PAIRS_TAG])
    same, diff = set(), set()
    while len(same) < half:
        j = int(rng.integers(num_test_ids))
        a, b = sorted(int(v) for v in rng.choice(images_per_id, 2, replace=False))
        same.add((j, a, j, b))
    while len(diff) < half:
        i, j = sorted(int(v) for v in rng.choice(num_test_ids, 2, replace=False))
        diff.add((i, int(rng.integers(images_per_id)), j, int(rng.integers(images_per_id))))
    same_l, diff_l = sorted(same), sorted(diff)
    rng.shuffle(same_l)
    rng.shuffle(diff_l)
    pairs = []
    for s_pair, d_pair, flip in zip(same_l, diff_l, rng.random(half) < 0.5):
        slot = [s_pair + (True, ), d_pair + (False, )]
        pairs.extend(slot[::-1] if flip else slot)
    return pairs


def write_synthface(out_dir: str,
                    num_train_ids: int = 1000,
                    images_per_id: int = 20,
                    num_test_ids: int = 200,
                    num_pairs: int = 3000,
                    seed: int = 0,
                    test_images_per_id: int = 10,
                    num_occluded_ids: Optional[int] = None,
                    occluded_per_id: int = 4,
                    occluders: Sequence[Tuple[str, float]] = DEFAULT_OCCLUDERS,
                    image_size: int = 112,
                    trait_jitter: float = DEFAULT_TRAIT_JITTER,
                    jpeg_quality: int = 95,
                    num_workers: int = 0,
                    progress: Optional[Callable[[int, int], None]] = None,
                    command: Optional[str] = None) -> dict:
    """Write a SynthFace data set in the formats of real face data.

    Layout under ``out_dir``::

        train/<id>/<k>.jpg                 training faces (FaceFolderDataset)
        val/synthface_clean.bin            verification pairs over disjoint test identities
                                           (VerificationBinDataset); pair k = images 2k, 2k+1
        val/synthface_clean_pairs.txt      per pair: id_a k_a id_b k_b issame
        occluded/images/<id>/<k>.jpg       occluded training-identity faces (OccludedFaceDataset)
        occluded/masks/<id>/<k>.png        their masks: 255 = visible face, 0 = occluder or not
                                           face (hair, neck, background)
        occluded/occluders.jsonl           per occluded image: identity, image, occluder record
        meta.json                          seed, counts, version, regeneration command

    ``<id>`` is the zero-padded identity id, so folder order is id order and the occluded
    set's labels (its first ``num_occluded_ids`` identities) equal the training labels. Test
    identities are ``TEST_ID_OFFSET + j``; the pairs file lists them 0-based (``j``). Occluded
    images are new draws (their own nuisance stream), each starting from the rendered face's
    true mask, with one occluder from ``occluders`` built by name from the transform registry
    with ``seed`` (training styles only; held-out styles stay for test benchmarks).

    Args:
        out_dir (str): output folder (created; existing files are overwritten).
        num_train_ids (int): training identities. Defaults to 1000.
        images_per_id (int): images per training identity. Defaults to 20.
        num_test_ids (int): verification identities. Defaults to 200.
        num_pairs (int): verification pairs (even). Defaults to 3000.
        seed (int): the data set's seed. Defaults to 0.
        test_images_per_id (int): images rendered per test identity. Defaults to 10.
        num_occluded_ids (int, optional): training identities in the occluded set (the first
            ones); None = all. Defaults to None.
        occluded_per_id (int): occluded images per identity; 0 = no occluded set. Defaults to 4.
        occluders (Sequence[tuple[str, float]]): ``(transform name, weight)``; weights are
            normalised. Defaults to :data:`DEFAULT_OCCLUDERS`.
        image_size (int): image size. Defaults to 112.
        trait_jitter (float): see :class:`SynthFaceGenerator`. Defaults to 0.6.
        jpeg_quality (int): quality of the written JPEGs. Defaults to 95 (AdaFace's
            ``convert.py``).
        num_workers (int): worker processes; 0 = render in this process. Defaults to 0.
        progress (Callable[[int, int], None], optional): called after each unit of work with
            the number of images it finished and the total number of images to render.
        command (str, optional): the command line to record in ``meta.json``; None = the
            equivalent ``tools/dataset_converters/make_synthface.py`` call.

    Returns:
        dict: the contents of ``meta.json``.
    """
    if num_train_ids < 1 or images_per_id < 1 or num_test_ids < 2 or test_images_per_id < 2:
        raise ValueError('write_synthface: need num_train_ids >= 1, images_per_id >= 1, '
                         'num_test_ids >= 2 and test_images_per_id >= 2; got '
                         f'{num_train_ids}, {images_per_id}, {num_test_ids}, '
                         f'{test_images_per_id}')
    num_occluded_ids = num_train_ids if num_occluded_ids is None else int(num_occluded_ids)
    if not 0 <= num_occluded_ids <= num_train_ids:
        raise ValueError(f'write_synthface: num_occluded_ids must be in [0, {num_train_ids}], '
                         f'got {num_occluded_ids}')
    names = tuple(str(n) for n, _ in occluders)
    weights = np.array([float(w) for _, w in occluders])
    if occluded_per_id and (not names or (weights < 0).any() or weights.sum() <= 0):
        raise ValueError(f'write_synthface: occluders must be (name, weight >= 0) pairs with a '
                         f'positive total, got {list(occluders)}')
    unknown = [n for n in names if TRANSFORMS.get(n) is None]
    if occluded_per_id and unknown:
        raise ValueError(f'write_synthface: occluder transform(s) {unknown} are not registered')
    # Fail on bad generator arguments before any file is written.
    SynthFaceGenerator(seed, image_size, trait_jitter)
    pairs = _pair_list(num_pairs, num_test_ids, test_images_per_id, seed)
    probs = tuple((weights / weights.sum()).tolist()) if occluded_per_id else ()
    width = max(5, len(str(num_train_ids - 1)))
    common = (seed, image_size, trait_jitter, jpeg_quality)
    os.makedirs(osp.join(out_dir, 'val'), exist_ok=True)
    train_tasks = [(out_dir, j, images_per_id, width) + common for j in range(num_train_ids)]
    occluded_tasks = [(out_dir, j, occluded_per_id, width) + common + (names, probs)
                      for j in range(num_occluded_ids if occluded_per_id else 0)]
    needed = sorted({(TEST_ID_OFFSET + p[0], p[1]) for p in pairs}
                    | {(TEST_ID_OFFSET + p[2], p[3]) for p in pairs})
    test_tasks = [key + common for key in needed]

    total = (num_train_ids * images_per_id + len(test_tasks) +
             len(occluded_tasks) * occluded_per_id)

    def report(count: int) -> None:
        if progress is not None:
            progress(count, total)

    encoded, records = {}, []
    pool = get_context().Pool(num_workers) if num_workers > 0 else None
    mapper = pool.imap if pool is not None else map
    try:
        for done in mapper(_write_train_identity, train_tasks):
            report(done)
        for key, data in mapper(_render_test_image, test_tasks):
            encoded[key] = data
            report(1)
        for recs in mapper(_write_occluded_identity, occluded_tasks):
            records.extend(recs)
            report(len(recs))
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    images, issame, lines = [], [], []
    for ja, ka, jb, kb, same in pairs:
        images += [encoded[(TEST_ID_OFFSET + ja, ka)], encoded[(TEST_ID_OFFSET + jb, kb)]]
        issame.append(same)
        lines.append(f'{ja} {ka} {jb} {kb} {int(same)}\n')
    dump_verification_bin(osp.join(out_dir, 'val', 'synthface_clean.bin'), images, issame)
    with open(osp.join(out_dir, 'val', 'synthface_clean_pairs.txt'), 'w') as f:
        f.writelines(lines)
    if records:
        with open(osp.join(out_dir, 'occluded', 'occluders.jsonl'), 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)

    if command is None:
        command = ' '.join([
            'python tools/dataset_converters/make_synthface.py', shlex.quote(str(out_dir)),
            f'--num-train-ids {num_train_ids}', f'--images-per-id {images_per_id}',
            f'--num-test-ids {num_test_ids}', f'--test-images-per-id {test_images_per_id}',
            f'--num-pairs {num_pairs}', f'--num-occluded-ids {num_occluded_ids}',
            f'--occluded-per-id {occluded_per_id}', '--occluders ' + ' '.join(
                f'{n}={w:g}' for n, w in occluders), f'--image-size {image_size}',
            f'--trait-jitter {trait_jitter:g}', f'--jpeg-quality {jpeg_quality}',
            f'--seed {seed}'
        ])
    meta = dict(
        generator='SynthFace',
        generator_version=SYNTHFACE_VERSION,
        seed=seed,
        image_size=image_size,
        trait_jitter=trait_jitter,
        jpeg_quality=jpeg_quality,
        num_train_ids=num_train_ids,
        images_per_id=images_per_id,
        num_train_images=num_train_ids * images_per_id,
        num_test_ids=num_test_ids,
        test_id_offset=TEST_ID_OFFSET,
        test_images_per_id=test_images_per_id,
        num_pairs=num_pairs,
        num_occluded_ids=num_occluded_ids if occluded_per_id else 0,
        occluded_per_id=occluded_per_id,
        num_occluded_images=len(records),
        occluders=[[n, float(w)] for n, w in occluders],
        occluder_styles='train',
        mask_convention='255 = visible face; 0 = occluder or not face (hair, neck, background)',
        command=command)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return meta
