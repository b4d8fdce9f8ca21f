"""The SynthPerson list files as a dataset that yields ``gt_label`` and ``gt_visibility``."""
import os.path as osp
from typing import List

import cv2
import numpy as np

from mmoaml.datasets import BaseFaceDataset
from mmoaml.registry import DATASETS

__all__ = ['SynthPersonDataset']

ROLES = ('train', 'gallery', 'query')


@DATASETS.register_module()
class SynthPersonDataset(BaseFaceDataset):
    """Pedestrian images with pixel visibility masks, listed in a SynthPerson list file.

    Each line of ``ann_file`` (relative to ``data_root``) reads
    ``<image> <mask> <label> <role> <occluded>`` with paths relative to ``data_root``
    (``occluded_reid.writer`` writes them). Like mmoaml's face datasets (``BaseFaceDataset``):
    the dataset decodes the image into ``results['img']`` (BGR) and puts the mask into
    ``results['visibility_mask']`` (float32 ``H x W``, 1 = visible person pixel), so that
    mmoaml's transforms keep both in step and ``PackFaceInputs`` turns them into the data sample's
    ``gt_visibility`` ``[1, H, W]``; ``gt_label`` is the identity. ``role`` and ``occluded`` are
    metainfo for the re-identification metric (add them to ``PackFaceInputs``' ``meta_keys``).

    For a list with training images, ``metainfo['classes']`` is ``('0', ..., str(max label))``
    (labels index the classifier directly); a test list sets no classes.

    Args:
        data_root (str): the data set folder.
        ann_file (str): the list file, e.g. ``'train.txt'`` or ``'test.txt'``.
        **kwargs: ``BaseFaceDataset`` / ``BaseDataset`` arguments (``pipeline``, ``test_mode``,
            ``skip_corrupt``, ...).

    Examples:
        >>> dataset = dict(type='SynthPersonDataset', data_root='work_dirs/synthperson',
        ...                ann_file='train.txt', pipeline=[dict(type='PackFaceInputs')])
    """

    def __init__(self, data_root: str = '', ann_file: str = 'train.txt', **kwargs) -> None:
        super().__init__(data_root=data_root, ann_file=ann_file, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Parse the list file (no image is decoded)."""
        with open(self.ann_file, encoding='utf-8') as f:
            rows = [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]
        data_list = []
        for n, fields in rows:
            if len(fields) != 5 or fields[3] not in ROLES or fields[4] not in ('0', '1'):
                raise ValueError(f'{type(self).__name__}: {self.ann_file}, line {n}: expected '
                                 f'"<image> <mask> <label> <role> <occluded>" with role in '
                                 f'{ROLES} and occluded 0/1, got {" ".join(fields)!r}')
            img, mask, label, role, occluded = fields
            data_list.append(
                dict(img_path=osp.join(self.data_root, img),
                     mask_path=osp.join(self.data_root, mask), gt_label=int(label), role=role,
                     occluded=bool(int(occluded))))
        if any(d['role'] == 'train' for d in data_list):
            # Training labels index the identity classifier; a test list has no classifier
            # (its people are new), so it sets no classes.
            self.set_classes_from_labels(np.array([d['gt_label'] for d in data_list]),
                                         self.ann_file)
        return data_list

    def load_sample(self, data_info: dict) -> dict:
        """Decode the image and its mask (``visibility_mask``, float32 in [0, 1])."""
        results = super().load_sample(data_info)
        mask = cv2.imread(results['mask_path'], cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise FileNotFoundError(f'{type(self).__name__}: cannot read the visibility mask '
                                    f'{results["mask_path"]} of {results["img_path"]}')
        if mask.shape != results['img'].shape[:2]:
            raise ValueError(f'{type(self).__name__}: mask {results["mask_path"]} is '
                             f'{mask.shape}, its image {results["img"].shape[:2]}')
        results['visibility_mask'] = mask.astype(np.float32) / 255.0
        return results
