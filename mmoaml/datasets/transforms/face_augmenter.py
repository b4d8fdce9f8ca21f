"""AdaFace's training augmentation (crop with zero padding, low resolution, photometric, flip)."""
import math
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmoaml.registry import TRANSFORMS
from .pipeline_state import face_image, sample_rng, visibility_mask

#: Down- and up-sampling interpolations of the low-resolution step (AdaFace augmenter.py).
INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC,
                  cv2.INTER_LANCZOS4)


@TRANSFORMS.register_module()
class FaceAugmenter(BaseTransform):
    """AdaFace's augmentation, in the reference order, on BGR uint8 faces with visibility masks.

    Reference: AdaFace ``dataset/augmenter.py`` + ``data.py`` (docs/reference.md#augmentation).
    Each step runs with its own probability:

    1. Crop with zero padding (``crop_prob``): a box is drawn as ``RandomResizedCrop`` would
       (area fraction ``U(*crop_scale)``, log-uniform aspect ratio in ``crop_ratio``, up to 10
       tries, then the central box) but not resized: the box is kept in place on a black canvas.
       The visibility mask is zeroed outside the box (the canvas is not face).
    2. Low resolution (``lowres_prob``): side ratio ``r ~ U(*lowres_ratio)``, down to
       ``int(r * W) x int(r * H)`` and back up, each interpolation drawn uniformly from
       ``INTERPOLATIONS``. The mask is unchanged (blurred content is still the face).
    3. Photometric (``photometric_prob``): ColorJitter brightness / contrast / saturation with
       factors ``U(1 - v, 1 + v)``, hue 0, applied in a random order.
    4. Horizontal flip (``flip_prob``), of the image and the mask.

    Probabilities default to 0.2 / 0.2 / 0.2 as in AdaFace's official MS1MV2 scripts
    (docs/reference.md#augmentation) and 0.5 for the flip (``RandomHorizontalFlip``).

    Deliberate difference: the reference runs torchvision's ColorJitter on PIL images that hold
    BGR arrays, so its saturation and contrast greys weigh the blue channel as red (PIL's
    ``L = 0.299 R + 0.587 G + 0.114 B`` applied to B, G, R). Here the grey is the true luma of the
    BGR image (``cv2.COLOR_BGR2GRAY``), and results are rounded to the nearest level (PIL
    truncates).

    The output always holds ``results['visibility_mask']`` (from the input mask, or
    ``face_region_prior`` when there was none). Inputs are not modified in place.

    Args:
        crop_prob (float): probability of the zero-padded crop. Defaults to 0.2.
        lowres_prob (float): probability of the low-resolution step. Defaults to 0.2.
        photometric_prob (float): probability of the colour jitter. Defaults to 0.2.
        flip_prob (float): probability of the horizontal flip. Defaults to 0.5.
        crop_scale (tuple[float, float]): crop area fraction range. Defaults to (0.2, 1.0).
        crop_ratio (tuple[float, float]): crop aspect-ratio range. Defaults to (3/4, 4/3).
        lowres_ratio (tuple[float, float]): low-resolution side ratio range.
            Defaults to (0.2, 1.0).
        brightness (float): brightness jitter. Defaults to 0.5.
        contrast (float): contrast jitter. Defaults to 0.5.
        saturation (float): saturation jitter. Defaults to 0.5.
        seed (int, optional): None = NumPy's global RNG; int = per-sample draws (see
            ``pipeline_state``). Defaults to None.
    """

    def __init__(self,
                 crop_prob: float = 0.2,
                 lowres_prob: float = 0.2,
                 photometric_prob: float = 0.2,
                 flip_prob: float = 0.5,
                 crop_scale: Tuple[float, float] = (0.2, 1.0),
                 crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 lowres_ratio: Tuple[float, float] = (0.2, 1.0),
                 brightness: float = 0.5,
                 contrast: float = 0.5,
                 saturation: float = 0.5,
                 seed: Optional[int] = None) -> None:
        for name, p in (('crop_prob', crop_prob), ('lowres_prob', lowres_prob),
                        ('photometric_prob', photometric_prob), ('flip_prob', flip_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f'FaceAugmenter: {name} must be in [0, 1], got {p}')
        for name, (low, high) in (('crop_scale', crop_scale), ('crop_ratio', crop_ratio),
                                  ('lowres_ratio', lowres_ratio)):
            if not 0 < low <= high:
                raise ValueError(f'FaceAugmenter: {name} must be 0 < low <= high, '
                                 f'got {(low, high)}')
        self.crop_prob = float(crop_prob)
        self.lowres_prob = float(lowres_prob)
        self.photometric_prob = float(photometric_prob)
        self.flip_prob = float(flip_prob)
        self.crop_scale = tuple(float(v) for v in crop_scale)
        self.crop_ratio = tuple(float(v) for v in crop_ratio)
        self.lowres_ratio = tuple(float(v) for v in lowres_ratio)
        self.jitter = (float(brightness), float(contrast), float(saturation))
        self.seed = seed

    def transform(self, results: dict) -> dict:
        """Augment ``results['img']`` and ``results['visibility_mask']``; see the class doc."""
        rng = sample_rng(results, self.seed, 'FaceAugmenter')
        img = face_image(results, 'FaceAugmenter')
        vis = visibility_mask(results, 'FaceAugmenter')
        if rng.random() < self.crop_prob:
            top, left, h, w = self.crop_box(rng, img.shape[:2], self.crop_scale, self.crop_ratio)
            box = (slice(top, top + h), slice(left, left + w))
            img_canvas, vis_canvas = np.zeros_like(img), np.zeros_like(vis)
            img_canvas[box], vis_canvas[box] = img[box], vis[box]
            img, vis = img_canvas, vis_canvas
        if rng.random() < self.lowres_prob:
            img = self.low_resolution(rng, img, self.lowres_ratio)
        if rng.random() < self.photometric_prob:
            img = self.photometric(rng, img, self.jitter)
        if rng.random() < self.flip_prob:
            img = np.ascontiguousarray(img[:, ::-1])
            vis = np.ascontiguousarray(vis[:, ::-1])
        results['img'] = img
        results['visibility_mask'] = vis
        return results

    @staticmethod
    def crop_box(rng: np.random.Generator, size: Tuple[int, int], scale: Tuple[float, float],
                 ratio: Tuple[float, float]) -> Tuple[int, int, int, int]:
        """``(top, left, height, width)`` drawn the way ``RandomResizedCrop.get_params`` does."""
        height, width = size
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif in_ratio > ratio[1]:
            w, h = int(round(height * ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    @staticmethod
    def low_resolution(rng: np.random.Generator, img: np.ndarray,
                       ratio: Tuple[float, float]) -> np.ndarray:
        """Down- and up-sample with random interpolations (AdaFace ``low_res_augmentation``)."""
        h, w = img.shape[:2]
        r = rng.uniform(*ratio)
        small = (max(1, int(r * w)), max(1, int(r * h)))
        down = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
        up = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
        return cv2.resize(cv2.resize(img, small, interpolation=down), (w, h), interpolation=up)

    @staticmethod
    def photometric(rng: np.random.Generator, img: np.ndarray,
                    jitter: Tuple[float, float, float]) -> np.ndarray:
        """Brightness, contrast and saturation jitter in a random order (ColorJitter, hue 0).

        Each factor is ``U(max(0, 1 - v), 1 + v)``; brightness scales the image, contrast blends
        it with its mean grey level, saturation with its per-pixel grey (BGR luma).
        """
        factors = [rng.uniform(max(0.0, 1.0 - v), 1.0 + v) for v in jitter]
        for op in rng.permutation(3):
            f = factors[op]
            if op == 0:
                img = cv2.addWeighted(img, f, img, 0.0, 0.0)
            elif op == 1:
                mean = float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())
                img = cv2.addWeighted(img, f, img, 0.0, mean * (1.0 - f))
            else:
                grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                img = cv2.addWeighted(img, f, grey, 1.0 - f, 0.0)
        return img

    def __repr__(self) -> str:
        return (f'FaceAugmenter(crop_prob={self.crop_prob}, lowres_prob={self.lowres_prob}, '
                f'photometric_prob={self.photometric_prob}, flip_prob={self.flip_prob}, '
                f'crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, '
                f'lowres_ratio={self.lowres_ratio}, brightness={self.jitter[0]}, '
                f'contrast={self.jitter[1]}, saturation={self.jitter[2]}, seed={self.seed})')
