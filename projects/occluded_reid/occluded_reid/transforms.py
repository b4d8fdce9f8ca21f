"""On-the-fly pedestrian occluders for training (the generator's occluders as a transform)."""
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmoaml.registry import TRANSFORMS
from .generator import OCCLUDER_KINDS, draw_occluder

__all__ = ['RandomPersonOcclusion']


@TRANSFORMS.register_module()
class RandomPersonOcclusion(BaseTransform):
    """Draw one SynthPerson occluder (``lower``, ``side``, ``upper``, ``blob``) onto the image.

    Works like mmoaml's occluders: with probability ``prob`` it draws onto ``results['img']``,
    multiplies ``results['visibility_mask']`` (1 = visible person pixel; required, since a
    pedestrian has no face-region prior) by the uncovered region and sets
    ``results['occluder']``. Randomness: ``seed=None`` draws a generator from NumPy's global RNG
    per call (MMEngine seeds it per worker); an int seed makes the draw a function of
    ``(seed, sample_idx)``.

    Args:
        prob (float): probability of occluding an image. Defaults to 0.5.
        kinds (Sequence[str]): occluder kinds drawn from. Defaults to all of
            ``OCCLUDER_KINDS``.
        seed (int, optional): see above. Defaults to None.
    """

    def __init__(self,
                 prob: float = 0.5,
                 kinds: Sequence[str] = OCCLUDER_KINDS,
                 seed: Optional[int] = None) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'RandomPersonOcclusion: prob must be in [0, 1], got {prob}')
        unknown = set(kinds) - set(OCCLUDER_KINDS)
        if not kinds or unknown:
            raise ValueError(f'RandomPersonOcclusion: kinds must be names from {OCCLUDER_KINDS}, '
                             f'got {list(kinds)}')
        self.prob = prob
        self.kinds = tuple(kinds)
        self.seed = seed

    def _rng(self, results: dict) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(np.random.randint(2**31 - 1))
        return np.random.default_rng((int(self.seed), 0x0CC, int(results['sample_idx'])))

    def transform(self, results: dict) -> dict:
        """Occlude ``results['img']`` with probability ``prob``."""
        if 'visibility_mask' not in results:
            raise KeyError('RandomPersonOcclusion needs results["visibility_mask"] (the '
                           f'person silhouette) for {results.get("img_path", "<unknown>")!r}')
        rng = self._rng(results)
        if rng.random() >= self.prob:
            return results
        img, vis, record = draw_occluder(results['img'], np.asarray(
            results['visibility_mask'], np.float32), rng, self.kinds)
        results.update(img=img, visibility_mask=vis, occluder=record)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, kinds={list(self.kinds)}, '
                f'seed={self.seed})')
