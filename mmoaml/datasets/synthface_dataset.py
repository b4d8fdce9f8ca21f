"""SynthFaceDataset: SynthFace faces rendered on the fly by :mod:`mmoaml.datagen.synthface`."""
from typing import List

from mmoaml.datagen.synthface import (DEFAULT_TRAIT_JITTER, TEST_ID_OFFSET, SynthFaceGenerator,
                                      cached_generator)
from mmoaml.registry import DATASETS
from .base_face_dataset import BaseFaceDataset

__all__ = ['SynthFaceDataset']


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

    The images equal those :func:`~mmoaml.datagen.write_synthface` writes for the same seed
    (before the writer's JPEG encoding), so a quick experiment in memory and a run on the
    written folders see the same faces.

    Args:
        num_identities (int): identities. Defaults to 100.
        images_per_identity (int): images per identity. Defaults to 10.
        seed (int): the generator's seed. Defaults to 0.
        split (str): ``'train'`` or ``'test'`` (identities from ``TEST_ID_OFFSET``).
            Defaults to ``'train'``.
        image_size (int): output size. Defaults to 112.
        trait_jitter (float): see :class:`~mmoaml.datagen.SynthFaceGenerator`. Defaults to 0.6.
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
        gen = cached_generator(self.seed, self.image_size, self.trait_jitter)
        face = gen.render_identity(data_info['identity_id'], data_info['image_index'])
        data_info['img'] = face.img
        data_info['img_shape'] = face.img.shape[:2]
        data_info['ori_shape'] = face.img.shape[:2]
        if self.with_face_mask:
            data_info['visibility_mask'] = face.face_mask
        return data_info
