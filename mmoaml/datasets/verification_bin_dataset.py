"""A verification pair set from an InsightFace ``.bin`` (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW)."""
import os.path as osp
from typing import List, Optional

import numpy as np

from mmoaml.fileio.verification_bin import (load_verification_bin, load_visibility_masks,
                                            masks_path_for)
from mmoaml.registry import DATASETS
from .base_face_dataset import BaseFaceDataset

__all__ = ['VerificationBinDataset']


@DATASETS.register_module()
class VerificationBinDataset(BaseFaceDataset):
    """The images of an InsightFace verification ``.bin``, in pair order.

    Item ``i`` is image ``i`` of the file; pair ``k`` = items ``2k`` and ``2k + 1``
    (docs/reference.md#verification-bin-layout). Each data info holds ``img_path = '<file>#<i>'``,
    ``pair_idx = i // 2``, ``issame`` (of that pair) and the encoded image; ``sample_idx`` is
    ``i``. There is no ``gt_label``. The file is read once, with the restricted unpickler of
    ``load_verification_bin`` (a crafted file cannot run code).

    Visibility masks (occluded variants): when ``mask_file`` is given, or a sibling
    ``<stem>_masks.npz`` exists (``verification_bin.save_visibility_masks`` describes the
    format), ``results['visibility_mask']`` holds image ``i``'s mask as float32 ``H x W`` in
    [0, 1] (1 = visible face; a file of 0/1 masks is scaled, see ``load_visibility_masks``);
    otherwise the pipeline falls back to the face-region prior.

    ``skip_corrupt`` is refused: substituting another image would silently change the pairs.
    ``test_mode`` defaults to True (an evaluation set).

    ``metainfo``: ``name`` (default: the file stem, e.g. ``'lfw'``), ``num_pairs`` and
    ``mask_file`` (None without masks) once fully initialised.

    Args:
        data_root (str): folder of the ``.bin`` files. Defaults to ''.
        ann_file (str): the ``.bin`` file, relative to ``data_root``. Defaults to
            ``'lfw.bin'``.
        name (str, optional): the set's name in ``metainfo``. Defaults to the file stem.
        mask_file (str, optional): visibility-mask ``.npz``, relative to ``data_root``; must
            exist when given. Defaults to None (use ``<stem>_masks.npz`` if present).
        **kwargs: ``BaseDataset`` arguments (``pipeline``, ``lazy_init``, ...).

    Examples:
        >>> lfw = dict(
        ...     type='VerificationBinDataset',
        ...     data_root='data/faces_webface_112x112',
        ...     ann_file='lfw.bin',
        ...     pipeline=[dict(type='PackFaceInputs')])
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = 'lfw.bin',
                 name: Optional[str] = None,
                 mask_file: Optional[str] = None,
                 test_mode: bool = True,
                 **kwargs) -> None:
        if kwargs.get('skip_corrupt', False):
            raise ValueError(f'VerificationBinDataset({ann_file}): skip_corrupt is not '
                             f'supported; replacing an unreadable image would change the pairs')
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        metainfo.setdefault('name', name or osp.splitext(osp.basename(ann_file))[0])
        if mask_file and data_root and not osp.isabs(mask_file):
            mask_file = osp.join(data_root, mask_file)
        self.mask_file = mask_file
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            metainfo=metainfo,
            test_mode=test_mode,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Load the ``.bin`` (and its masks) and list one data info per image."""
        images, issame = load_verification_bin(self.ann_file)
        mask_file = self.mask_file
        if mask_file is None and osp.isfile(masks_path_for(self.ann_file)):
            mask_file = masks_path_for(self.ann_file)
        masks = None
        if mask_file is not None:
            masks = load_visibility_masks(mask_file)
            if len(masks) != len(images):
                raise ValueError(f'{mask_file}: {len(masks)} masks for the {len(images)} '
                                 f'images of {self.ann_file}')
        self._metainfo['num_pairs'] = len(issame)
        self._metainfo['mask_file'] = mask_file
        data_list = []
        for i, buf in enumerate(images):
            info = dict(
                img_path=f'{self.ann_file}#{i}',
                img_bytes=buf,
                pair_idx=i // 2,
                issame=bool(issame[i // 2]))
            if masks is not None:
                info['visibility_mask_u8'] = masks[i]
                info['mask_path'] = f'{mask_file}#{i}'
            data_list.append(info)
        return data_list

    def load_sample(self, data_info: dict) -> dict:
        """Decode image ``i`` and, when the set has masks, its visibility mask."""
        mask = data_info.pop('visibility_mask_u8', None)
        results = super().load_sample(data_info)
        if mask is not None:
            if mask.shape != results['img'].shape[:2]:
                raise ValueError(f'{results["mask_path"]}: mask of shape {mask.shape} for '
                                 f'image {results["img_path"]} of shape '
                                 f'{results["img"].shape[:2]}')
            results['visibility_mask'] = mask.astype(np.float32) / 255.0
        return results
