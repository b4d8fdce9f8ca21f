"""The SynthFace renderer: paints one face from its traits and nuisance, layer by layer.

Background, hair behind the head, neck and ears, skin, facial features, hair over the face,
then the capture (illumination, blur, sensor noise, JPEG). Everything is drawn with vectorised
OpenCV calls at the output resolution, except the soft skin shading (:mod:`.skin`).
"""
from dataclasses import dataclass

import cv2
import numpy as np

from .drawing import ONE, SHIFT, blend, colour, fill_poly, fixed_point
from .features import draw_brows, draw_eyes, draw_mouth, draw_nose, draw_spots
from .hair import hair_alphas, hair_layer
from .layout import CX, EYE_Y, FaceLayout
from .skin import skin_image
from .traits import Nuisance, bank_rng

__all__ = ['RenderedFace', 'FaceRenderer']


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


def _background(face: FaceLayout) -> np.ndarray:
    """The nuisance's ``[3, 3]`` corner colours, smoothly interpolated: ``[S, S, 3]`` uint8."""
    bg = cv2.resize(face.nu.background, (face.size, face.size), interpolation=cv2.INTER_LINEAR)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _draw_neck_and_ears(img: np.ndarray, face: FaceLayout) -> None:
    """Neck (in shadow below the jaw) and ears, drawn before the face covers their inner parts."""
    jw, fw = face.jaw_hw, face.face_hw
    y0 = face.mouth_c[1]
    neck = np.array([[CX - 0.62 * jw, y0], [CX + 0.62 * jw, y0], [CX + 0.72 * jw, 140],
                     [CX - 0.72 * jw, 140]])
    fill_poly(img, face.to_img(face.outer(neck)), colour(face.skin * 0.68))
    ear_y = 0.5 * (EYE_Y + face.nose[1])
    ears = face.to_img(face.outer([[CX - fw + 0.5, ear_y], [CX + fw - 0.5, ear_y]]))
    axes = (int(4.2 * face.scale_px * ONE), int(10 * face.scale_px * ONE))
    for side, centre in zip((-1, 1), ears):
        cv2.ellipse(img, fixed_point(centre), axes, face.nu.roll + side * 8, 0, 360,
                    colour(face.skin * 0.82), -1, cv2.LINE_AA, SHIFT)


class FaceRenderer:
    """Paints faces of one output size; holds the fixed noise banks its images share.

    Args:
        seed (int): seeds the banks (:func:`~.traits.bank_rng`).
        size (int): output size ``S``.
    """

    def __init__(self, seed: int, size: int) -> None:
        self.size = size
        self.unit = size / 112.0
        rng = bank_rng(seed)
        # Sensor noise and hair strands come from fixed banks twice the image size; an image
        # uses a random window of each, which is much cheaper than drawing fresh noise.
        self._noise_bank = rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)
        strands = rng.standard_normal((2 * size, 2 * size)).astype(np.float32)
        strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.7 * self.unit,
                                   sigmaY=5.0 * self.unit)
        self._strands = (1.0 + 0.22 * strands / strands.std()).astype(np.float32)
        ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
        self._ramp_x, self._ramp_y = ramp[None, :], ramp[:, None]

    def _window(self, bank: np.ndarray, nu: Nuisance) -> np.ndarray:
        """The ``S x S`` window of a bank that image ``nu`` uses."""
        oy, ox = nu.noise_offset
        return bank[oy:oy + self.size, ox:ox + self.size]

    def render(self, traits: np.ndarray, nu: Nuisance) -> RenderedFace:
        """Render one face.

        Args:
            traits (np.ndarray): ``[TRAIT_DIM]`` identity traits.
            nu (Nuisance): the image's nuisance.

        Returns:
            RenderedFace: the image, its face mask and its landmarks.
        """
        face = FaceLayout(traits, nu, self.size)
        outline = face.outline()
        hair = hair_layer(face, self._window(self._strands, nu))
        back, front = hair_alphas(face, outline)
        img = blend(hair, _background(face), back)
        _draw_neck_and_ears(img, face)
        face_alpha = np.zeros((self.size, self.size), np.uint8)
        fill_poly(face_alpha, face.to_img(outline), 255)
        img = blend(skin_image(face, outline), img, face_alpha)
        for draw in (draw_spots, draw_brows, draw_eyes, draw_nose, draw_mouth):
            draw(img, face)
        img = blend(hair, img, front)
        face_mask = ((face_alpha >= 128) & (front < 128)).astype(np.float32)
        return RenderedFace(
            self._capture(img, nu), face_mask,
            face.to_img(face.landmarks_face).astype(np.float32))

    def _capture(self, img: np.ndarray, nu: Nuisance) -> np.ndarray:
        """Illumination, blur, sensor noise and JPEG compression of a uint8 image."""
        out = img.astype(np.float32)
        if nu.light_strength > 0 or nu.gain != 1 or nu.cast != (1.0, 1.0, 1.0):
            theta = np.deg2rad(nu.light_angle)
            light = (np.float32(2 * nu.light_strength * np.cos(theta)) * self._ramp_x +
                     np.float32(2 * nu.light_strength * np.sin(theta)) * self._ramp_y + 1)
            light *= np.float32(nu.gain)
            out = cv2.multiply(out, cv2.merge([light * np.float32(c) for c in nu.cast]))
        if nu.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), nu.blur_sigma * self.unit)
        if nu.noise_sigma > 0:
            out += np.float32(nu.noise_sigma) * self._window(self._noise_bank, nu)
        img = np.clip(out, 0, 255).astype(np.uint8)
        if nu.jpeg_quality:
            _, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, nu.jpeg_quality])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img
