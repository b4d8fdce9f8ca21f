"""SynthFace hair: a strand-textured colour layer and where it covers, behind and over the face.

Hair is not face: the renderer removes the hair over the face from the face mask.
"""
from typing import Tuple

import cv2
import numpy as np

from .drawing import fill_poly
from .layout import CX, EYE_Y, FaceLayout

__all__ = ['hair_layer', 'hair_alphas']

# Fixed sample positions of the hairline and the crown.
_U_LINE = np.linspace(-1, 1, 15)
_A_CROWN = np.linspace(0, np.pi, 11)


def hair_layer(face: FaceLayout, strands: np.ndarray) -> np.ndarray:
    """Full-frame hair colour with strands.

    Args:
        face (FaceLayout): the image's layout.
        strands (np.ndarray): ``[S, S]`` float32 strand texture around 1.

    Returns:
        np.ndarray: ``[S, S, 3]`` float32 BGR.
    """
    t, nu = face.t, face.nu
    # A narrow dark palette; identity moves it less than the per-image draw does.
    dark = 0.5 + 0.06 * t('hair_darkness') + 0.15 * nu.hair_darkness
    warm = 0.35 + 0.06 * t('hair_warmth') + 0.15 * nu.hair_warmth
    level = 20 + 60 * min(1.0, max(0.0, 1 - dark))
    hair = (level * (0.9 - 0.25 * warm), level * 1.0, level * (1.05 + 0.3 * warm))
    return cv2.merge([strands * np.float32(c) for c in hair])


def hair_alphas(face: FaceLayout, outline: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Alpha (uint8 ``[S, S]``, 255 = hair) of the hair behind the head and over the face.

    Args:
        face (FaceLayout): the image's layout.
        outline (np.ndarray): ``[K, 2]`` face outline in the face frame.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(back, front)``.
    """
    nu, s = face.nu, face.size
    fw, vol = face.face_hw, nu.hair_volume
    top = float(outline[:, 1].min())
    hairline_y = EYE_Y - 27.0 - 1.0 * face.t('hairline_height') + nu.hairline
    hairline_y += nu.fringe * (EYE_Y - 17.0 - hairline_y)
    # The hairline drops to the temples and dips (a parting) at ``part``.
    temple_y = EYE_Y - 10.0 + 0.3 * nu.side_hair
    line_y = hairline_y + (temple_y - hairline_y) * np.abs(_U_LINE)**2.2
    line_y -= 3.0 * np.exp(-((_U_LINE - nu.part) / 0.25)**2) * (1 - nu.fringe)
    line = np.stack([CX + _U_LINE * 0.97 * fw, line_y], 1)
    side = EYE_Y + nu.side_hair
    crown_y = EYE_Y - 12.0
    crown = np.stack([CX + (fw + vol) * np.cos(_A_CROWN),
                      crown_y - (crown_y - top + vol + 3) * np.sin(_A_CROWN)], 1)
    front_poly = np.vstack([[[CX - fw - vol, side + 3], [CX - fw - 0.5, side]], line,
                            [[CX + fw + 0.5, side], [CX + fw + vol, side + 3]], crown])
    length = EYE_Y + nu.hair_length
    back_poly = np.vstack([crown, [[CX - fw - vol - 2, length], [CX - fw + 6, length + 5],
                                   [CX + fw - 6, length + 5], [CX + fw + vol + 2, length]]])
    back = np.zeros((s, s), np.uint8)
    front = np.zeros((s, s), np.uint8)
    fill_poly(back, face.to_img(face.outer(back_poly)), 255)
    fill_poly(front, face.to_img(face.outer(front_poly)), 255)
    return back, front
