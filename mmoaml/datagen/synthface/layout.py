"""The per-image geometry of a SynthFace face: feature positions, alignment, outline, skin colour.

Geometry is built in the *face frame*: 112 px units, centre column :data:`CX`, eyes on
:data:`EYE_Y` before alignment. :meth:`FaceLayout.to_img` maps face-frame points to output
pixels.
"""
import numpy as np

from mmoaml.structures.face_template import ARCFACE_TEMPLATE_112
from .drawing import mix, similarity, smooth_closed
from .traits import Nuisance, image_traits

__all__ = ['CX', 'EYE_Y', 'FaceLayout']

#: Face-frame constants: the column of the face's centre line, the eye line before alignment.
CX, EYE_Y = 56.0, 51.6
_TEMPLATE = ARCFACE_TEMPLATE_112.astype(np.float64)
#: Skin palette along the lightness axis (BGR): deep, medium, light.
_SKIN_DARK = np.array([52.0, 72.0, 108.0])
_SKIN_MID = np.array([100.0, 135.0, 180.0])
_SKIN_LIGHT = np.array([168.0, 192.0, 228.0])


class FaceLayout:
    """Where the parts of one face image go, and its skin colour.

    Args:
        traits (np.ndarray): ``[TRAIT_DIM]`` identity traits.
        nu (Nuisance): the image's nuisance.
        size (int): output size ``S``.

    Attributes:
        traits (ImageTraits): the image's traits (identity plus per-image offsets).
        eyes (np.ndarray): ``[2, 2]`` eye centres, image-left first (face frame).
        nose, mouth_c (np.ndarray): ``[2]`` nose tip and mouth centre (face frame).
        landmarks_face (np.ndarray): ``[5, 2]`` landmarks in ``ARCFACE_TEMPLATE_112`` order.
        lin, off (np.ndarray): ``[2, 2]`` and ``[2]``: output pixel = ``lin @ point + off``.
        scale_px (float): output pixels per face-frame pixel.
        skin (np.ndarray): ``[3]`` float64 BGR skin colour.
    """

    def __init__(self, traits: np.ndarray, nu: Nuisance, size: int) -> None:
        self.nu, self.size = nu, size
        self.unit = size / 112.0
        self.traits = image_traits(traits, nu)
        self._place_features()
        self._align()
        self.skin = self._skin_colour()

    def t(self, name: str) -> float:
        """The image's value of trait ``name``."""
        return self.traits.named[name]

    def _place_features(self) -> None:
        """Feature positions and sizes in the face frame, after pose and expression."""
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
        self.eyes = (np.array([[CX - half_iod, EYE_Y], [CX + half_iod, EYE_Y]]) +
                     0.35 * self.turn)
        self.nose = np.array([CX, nose_y]) + self.turn
        self.mouth_c = np.array([CX, mouth_y]) + 0.45 * self.turn
        self.corner_lift = 2.2 * nu.smile + 0.5 * t('mouth_corner_tilt')
        corners = self.mouth_c + np.array([[-self.mouth_hw, -self.corner_lift],
                                           [self.mouth_hw, -self.corner_lift]])
        self.landmarks_face = np.vstack([self.eyes, self.nose[None], corners])

    def _align(self) -> None:
        """The face-frame to output-pixel map.

        Fits the landmarks to the template like a detector-based crop, then adds the
        detector's residual (roll, scale, shift) about the crop centre.
        """
        nu = self.nu
        align = similarity(self.landmarks_face, _TEMPLATE)
        theta = np.deg2rad(nu.roll)
        rot = nu.scale * np.array([[np.cos(theta), -np.sin(theta)],
                                   [np.sin(theta), np.cos(theta)]])
        centre = np.array([56.0, 60.0])
        residual = np.hstack([rot, (centre - rot @ centre + np.asarray(nu.shift))[:, None]])
        m = (residual[:, :2] @ align[:, :2], residual[:, :2] @ align[:, 2] + residual[:, 2])
        self.lin = m[0] * self.unit
        self.off = m[1] * self.unit
        self.scale_px = float(np.sqrt(abs(np.linalg.det(self.lin))))

    def _skin_colour(self) -> np.ndarray:
        """BGR skin colour: lightness along the palette, warmth shifts blue against red."""
        t = self.t
        light = min(1.0, max(0.0, 0.55 + 0.2 * t('skin_lightness')))
        skin = (mix(_SKIN_DARK, _SKIN_MID, light / 0.5) if light < 0.5 else
                mix(_SKIN_MID, _SKIN_LIGHT, (light - 0.5) / 0.5))
        return skin + np.array([-6.0, 0.0, 6.0]) * t('skin_warmth')

    def to_img(self, pts: np.ndarray) -> np.ndarray:
        """Face-frame ``[K, 2]`` points to output pixels."""
        return pts @ self.lin.T + self.off

    def outer(self, pts) -> np.ndarray:
        """Head turn of the outline and hair: the far side narrows, the whole moves back."""
        pts = np.array(pts, dtype=np.float64)
        dx = pts[:, 0] - CX
        pts[:, 0] = CX + dx * (1 - 0.07 * self.nu.yaw * np.sign(dx))
        return pts - 0.4 * self.turn

    def outline(self) -> np.ndarray:
        """Closed face outline (face frame) from the top of the forehead round the chin."""
        t = self.t
        fw, jw = self.face_hw, self.jaw_hw
        top = EYE_Y - 40.0 - 2.0 * t('forehead_height')
        cheek = 0.5 * (self.nose[1] + self.mouth_c[1])
        right = np.array([
            [0.55 * fw, top + 3],
            [0.88 * fw, EYE_Y - 24],
            [0.98 * fw, EYE_Y - 6],
            [fw, EYE_Y + 8],
            [0.5 * (fw + jw) + 1.5 * t('cheek_fullness'), cheek],
            [jw, self.mouth_c[1] + 4],
            [0.5 * (jw + self.chin_hw) + 2, self.chin_y - 6],
            [self.chin_hw, self.chin_y - 1.2],
        ])
        left = right[::-1] * [-1, 1]
        ctrl = np.vstack([[0.0, top], right, [[0.0, self.chin_y]], left]) + [CX, 0.0]
        return self.outer(smooth_closed(ctrl))
