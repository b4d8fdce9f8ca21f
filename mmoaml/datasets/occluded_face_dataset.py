"""Occluded faces with pixel ground-truth visibility masks, one folder per identity."""
import os.path as osp
from typing import List

import cv2
import numpy as np

from mmoaml.fileio.image import CorruptImageError
from mmoaml.registry import DATASETS
from .face_folder_dataset import FaceFolderDataset

__all__ = ['OccludedFaceDataset']


@DATASETS.register_module()
class OccludedFaceDataset(FaceFolderDataset):
    """Occluded faces and their visibility masks (the occlusion head's supervision).

    Layout::

        <data_root>/<img_dir>/<identity>/<name>.jpg     aligned face (any of the extensions)
        <data_root>/<mask_dir>/<identity>/<name>.png    its visibility mask

    A mask is a single-channel 8-bit PNG of the image's size: **255 = visible face pixel,
    0 = covered by an occluder or not face** (background, hair, the crop's black canvas);
    intermediate values are fractional visibility. ``results['visibility_mask']`` is the mask
    as float32 ``H x W`` in [0, 1] (``value / 255``), 1 = visible, as everywhere in mmoaml.
    Masks stored as 0/1 are read correctly, decided per file (each mask is its own file): a
    mask whose largest value is 1 is taken as 0/1 (``value / 1``), since in 0/255 it would
    mean no pixel more than 1/255 visible; an all-zero mask is fully covered in both.

    Samples and labels are listed as in ``FaceFolderDataset`` (a scan of ``img_dir``, or a list
    file with paths relative to ``img_dir``); every listed image must have its mask, which is
    checked once at start-up. Errors: a missing mask raises ``FileNotFoundError`` naming the
    image and the expected mask path; a mask that is not a single-channel 8-bit image, or whose
    size differs from its image's, raises ``ValueError`` naming both; an undecodable mask
    raises ``CorruptImageError`` naming the mask.

    Args:
        data_root (str): the dataset's root folder. Defaults to ''.
        img_dir (str): image folder, relative to ``data_root``. Defaults to ``'images'``.
        mask_dir (str): mask folder, relative to ``data_root``. Defaults to ``'masks'``.
        ann_file (str): optional list file (see ``FaceFolderDataset``). Defaults to ''.
        **kwargs: ``FaceFolderDataset`` / ``BaseDataset`` arguments.

    Examples:
        >>> occluded = dict(
        ...     type='OccludedFaceDataset',
        ...     data_root='data/occluded_faces',
        ...     pipeline=[dict(type='PackFaceInputs')])
    """

    def __init__(self,
                 data_root: str = '',
                 img_dir: str = 'images',
                 mask_dir: str = 'masks',
                 ann_file: str = '',
                 **kwargs) -> None:
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=dict(img_path=img_dir, mask_path=mask_dir),
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """List images as ``FaceFolderDataset`` does and pair each with its mask file."""
        data_list = super().load_data_list()
        mask_root = self.data_prefix['mask_path']
        for info in data_list:
            rel = osp.relpath(info['img_path'], self.img_root)
            info['mask_path'] = osp.join(mask_root, osp.splitext(rel)[0] + '.png')
            if not osp.isfile(info['mask_path']):
                raise FileNotFoundError(f'{type(self).__name__}: no visibility mask for image '
                                        f'{info["img_path"]}; expected {info["mask_path"]}')
        return data_list

    def load_sample(self, data_info: dict) -> dict:
        """Decode the image and its mask into ``img`` and ``visibility_mask``."""
        results = super().load_sample(data_info)
        mask_path, img_path = results['mask_path'], results['img_path']
        try:
            with open(mask_path, 'rb') as f:
                buf = np.frombuffer(f.read(), np.uint8)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'visibility mask {mask_path} of image {img_path} not '
                                    f'found') from err
        try:
            mask = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        except cv2.error:
            mask = None
        if mask is None:
            raise CorruptImageError(f'{mask_path}: cannot decode visibility mask')
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError(f'{mask_path}: a visibility mask must be a single-channel 8-bit '
                             f'image, got shape {mask.shape} dtype {mask.dtype} '
                             f'(image {img_path})')
        if mask.shape != results['img'].shape[:2]:
            raise ValueError(f'{mask_path}: mask size {mask.shape} differs from its image '
                             f'{img_path} of size {results["img"].shape[:2]}')
        # One mask per file: a largest value of 1 is a 0/1 mask (see the class docstring).
        scale = 1.0 if mask.max() == 1 else 255.0
        results['visibility_mask'] = mask.astype(np.float32) / scale
        return results
