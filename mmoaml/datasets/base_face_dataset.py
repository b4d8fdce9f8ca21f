"""The base of mmoaml's face datasets: images decoded in ``prepare_data``, corrupt-sample policy."""
import logging
from typing import List, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dataset.base_dataset import force_full_init
from mmengine.logging import print_log

from mmoaml.fileio.image import CorruptImageError, decode_image, read_image

__all__ = ['BaseFaceDataset', 'SPARSE_LABEL_LIMIT']

#: Labels below this are accepted from any file, however few samples it holds (see
#: ``BaseFaceDataset.label_limit``); ``classes`` then costs at most about 70 MB.
SPARSE_LABEL_LIMIT = 1 << 20


class BaseFaceDataset(BaseDataset):
    """MMEngine ``BaseDataset`` whose samples are faces decoded by the dataset itself.

    Subclasses list their samples once in ``load_data_list`` (annotations only: no image is
    decoded to learn labels) as data infos holding ``img_path`` (a file path, or
    ``'<file>#<index>'`` for containers), ``gt_label`` (int identity) where the set has labels,
    and optionally ``img_bytes`` (the encoded image itself, for in-memory containers). They
    override :meth:`read_image` when the bytes come from elsewhere (a RecordIO file) and
    :meth:`load_sample` to add per-sample extras (visibility masks).

    ``prepare_data(idx)`` decodes the image into ``results['img']`` (``H x W x 3`` uint8 BGR),
    sets ``img_shape``/``ori_shape`` and ``sample_idx`` and runs the pipeline. A missing or
    undecodable image:

    * ``skip_corrupt=False`` (default): raises ``FileNotFoundError``/``CorruptImageError``
      naming the path, so a broken file is noticed, not trained around.
    * ``skip_corrupt=True``: logs a warning, adds one to :attr:`num_skipped` and returns the
      next readable sample (``idx + 1``, ``idx + 2``, ... wrapping around), which keeps the
      substitute deterministic, unlike MMEngine's random re-fetch. :attr:`num_skipped` counts
      per process (each dataloader worker keeps its own count).

    Args:
        skip_corrupt (bool): skip unreadable samples instead of raising. Defaults to False.
        **kwargs: the arguments of ``mmengine.dataset.BaseDataset``.
    """

    def __init__(self, *args, skip_corrupt: bool = False, **kwargs) -> None:
        self.skip_corrupt = bool(skip_corrupt)
        self.num_skipped = 0
        super().__init__(*args, **kwargs)

    def read_image(self, data_info: dict) -> np.ndarray:
        """Decode the image of one data info: from ``img_bytes`` if present, else the file.

        Returns:
            np.ndarray: ``H x W x 3`` uint8 BGR.
        """
        buf = data_info.pop('img_bytes', None)
        if buf is not None:
            return decode_image(buf, data_info['img_path'])
        return read_image(data_info['img_path'])

    def load_sample(self, data_info: dict) -> dict:
        """Turn a data info into the pipeline's input dict (the image decoded into ``img``)."""
        img = self.read_image(data_info)
        data_info['img'] = img
        data_info['img_shape'] = img.shape[:2]
        data_info['ori_shape'] = img.shape[:2]
        return data_info

    def prepare_data(self, idx: int) -> dict:
        """Load sample ``idx`` (with ``skip_corrupt``: the next readable one); run the pipeline."""
        n = len(self)
        for step in range(n):
            data_info = self.get_data_info((idx + step) % n)
            try:
                results = self.load_sample(data_info)
            except (CorruptImageError, FileNotFoundError) as err:
                if not self.skip_corrupt:
                    raise
                self.num_skipped += 1
                print_log(
                    f'{type(self).__name__}: skipping unreadable sample '
                    f'{data_info.get("img_path")!r} ({err}); {self.num_skipped} skipped so far '
                    f'in this process',
                    logger='current',
                    level=logging.WARNING)
                continue
            return self.pipeline(results)
        raise RuntimeError(f'{type(self).__name__}: none of the {n} samples could be read '
                           f'(all skipped as corrupt or missing)')

    @classmethod
    def label_limit(cls, num_samples: int) -> int:
        """Exclusive upper bound of the identity labels of a file with ``num_samples`` samples.

        ``max(num_samples, SPARSE_LABEL_LIMIT)``: labels may leave gaps (a subset keeps its
        full set's numbering, e.g. Glint360K's 360k identities), but ``classes`` holds one
        entry per label up to the largest, so a label read from a file must not make it
        outgrow both the file and the limit (a label of 10**9 would cost about 60 GB).
        """
        return max(int(num_samples), SPARSE_LABEL_LIMIT)

    @classmethod
    def check_label(cls, value: Union[int, float], num_samples: int, where: str) -> int:
        """An identity label read from a file, as an int in ``[0, label_limit(num_samples))``.

        Args:
            value (int | float): the label as read (a RecordIO header stores float32).
            num_samples (int): samples in the file, see :meth:`label_limit`.
            where (str): the file and line, record or offset, for the message.

        Raises:
            ValueError: not a finite integer, negative, or past the limit (named by ``where``).
        """
        if not isinstance(value, (int, np.integer)):
            value = float(value)
            if not value.is_integer():  # also NaN and inf
                raise ValueError(f'{where}: non-integer label {value!r}')
        label = int(value)
        if label < 0:
            raise ValueError(f'{where}: identity labels must be >= 0, got {label}')
        limit = cls.label_limit(num_samples)
        if label >= limit:
            raise ValueError(
                f'{where}: label {label} is too large for a file of {num_samples} samples '
                f'(labels must be below {limit}: each label up to the largest becomes a class)')
        return label

    def set_classes_from_labels(self, labels: np.ndarray, source: str) -> None:
        """Set ``metainfo['classes']`` for integer identity labels stored in the data itself.

        The labels index the classifier directly (they are not remapped, so a model trained on
        the reference's labels keeps its head), hence ``classes`` is ``('0', ..., str(max))``.
        Gaps (an identity number with no sample) are allowed but logged, since the head then
        holds a class no sample trains.

        Args:
            labels (np.ndarray): every sample's label, each already passed through
                :meth:`check_label` by the reader (which knows the line or record).
            source (str): the annotation file, for messages.
        """
        labels = np.asarray(labels)
        if labels.size == 0:
            raise ValueError(f'{source}: no samples found')
        num_classes = int(labels.max()) + 1
        num_present = len(np.unique(labels))
        if num_present != num_classes:
            print_log(
                f'{type(self).__name__}: {source} uses {num_present} distinct labels in '
                f'[0, {num_classes - 1}]; {num_classes - num_present} identities have no sample',
                logger='current',
                level=logging.WARNING)
        self._metainfo['classes'] = tuple(str(k) for k in range(num_classes))

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        """The identity label of every sample, in dataset order, read from the annotations.

        Returns:
            np.ndarray: int64 ``[len(self)]``.
        """
        return np.array([self.get_data_info(i)['gt_label'] for i in range(len(self))],
                        dtype=np.int64)

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        """The identity of sample ``idx`` as a one-element list (MMEngine's class-aware API)."""
        return [int(self.get_data_info(idx)['gt_label'])]
