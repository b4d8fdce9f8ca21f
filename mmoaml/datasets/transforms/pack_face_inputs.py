"""Pack a face pipeline's results into model inputs and a ``DataSample``."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.structures import DataSample

from mmoaml.registry import TRANSFORMS
from .pipeline_state import face_image, visibility_mask


@TRANSFORMS.register_module()
class PackFaceInputs(BaseTransform):
    """Pack ``results`` as ``dict(inputs, data_samples)`` for mmoaml models.

    * ``inputs``: uint8 tensor ``[3, H, W]``, contiguous, channel order unchanged (BGR; only
      ``FaceDataPreprocessor`` converts it).
    * ``data_samples``: an mmpretrain ``DataSample`` with ``gt_label`` when ``results`` holds
      one, the data field ``gt_visibility`` = float32 ``[1, H, W]`` from
      ``results['visibility_mask']`` (else ``face_region_prior``; 1 = visible face), and the
      ``meta_keys`` present in ``results`` as metainfo.

    Args:
        meta_keys (Sequence[str]): metainfo keys copied when present. Defaults to
            ``('sample_idx', 'img_path', 'pair_idx', 'issame', 'img_shape', 'occluder')``.

    Examples:
        >>> pipeline = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
    """

    DEFAULT_META_KEYS = ('sample_idx', 'img_path', 'pair_idx', 'issame', 'img_shape', 'occluder')

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        if isinstance(meta_keys, str):
            raise TypeError(f'PackFaceInputs: meta_keys must be a sequence of names, '
                            f'got the string {meta_keys!r}')
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack one sample; see the class docstring."""
        img = face_image(results, 'PackFaceInputs')
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        vis = visibility_mask(results, 'PackFaceInputs')
        data_sample = DataSample()
        if 'gt_label' in results:
            data_sample.set_gt_label(results['gt_label'])
        data_sample.set_field(
            torch.from_numpy(np.array(vis, np.float32)[None]), 'gt_visibility', dtype=torch.Tensor)
        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'PackFaceInputs(meta_keys={self.meta_keys})'
