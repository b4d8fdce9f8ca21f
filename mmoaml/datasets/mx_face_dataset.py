"""Faces in InsightFace's MXNet RecordIO packs (train.rec + train.idx), read without MXNet."""
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from mmoaml.fileio.image import decode_image
from mmoaml.fileio.recordio import (RecordIOError, RecordIOReader, load_recordio_index,
                                    unpack_ir_record)
from mmoaml.registry import DATASETS
from .base_face_dataset import BaseFaceDataset

__all__ = ['MXFaceDataset']


@DATASETS.register_module()
class MXFaceDataset(BaseFaceDataset):
    """Aligned faces from an InsightFace RecordIO pack (e.g. ``faces_webface_112x112``).

    Which records are images (docs/reference.md#recordio-layout, as AdaFace's and InsightFace's
    readers do): if record 0's header has ``flag > 0`` its first label value is ``end_index``
    and the images are keys ``1 .. end_index - 1`` (records past that are InsightFace's
    per-identity range records and are ignored); otherwise every key of the ``.idx`` file is an
    image. An image's identity is its header label, or the label array's first element.

    Labels are learned once, in ``load_data_list``, from the record headers only: each header
    is read by seeking to the record's offset, no image is decoded. They are used as stored
    (not remapped); ``metainfo['classes']`` is ``('0', ..., str(max label))``.

    Colour order: InsightFace packed RGB pixel arrays as ordinary JPEGs (MXNet's encoder
    expects RGB), so the JPEG files themselves are in the usual colour order, and decoding them
    with OpenCV yields BGR, like every other mmoaml source. (The reference decodes with MXNet
    to RGB and then flips to BGR: the same pixels.)

    Every data info holds ``img_path = '<rec file>#<key>'``, ``gt_label`` and ``rec_offset``.
    The ``.rec`` file is opened lazily in each DataLoader worker (see ``RecordIOReader``).
    Malformed files (bad magic, truncated record, ``.idx`` offsets past the end, a header
    record pointing at missing keys, a label that is not an integer in
    ``[0, label_limit(number of images))``) raise ``RecordIOError`` naming the file and the
    record's key and offset. Counts are checked against the ``.idx`` before anything is
    allocated: an end index needs one ``.idx`` line per image key.

    Args:
        data_root (str): folder holding the pack. Defaults to ''.
        rec_file (str): the ``.rec`` file, relative to ``data_root``. Defaults to
            ``'train.rec'``.
        idx_file (str): the ``.idx`` file, relative to ``data_root``. Defaults to
            ``'train.idx'``.
        **kwargs: ``BaseFaceDataset`` / ``BaseDataset`` arguments.

    Examples:
        >>> train_dataset = dict(
        ...     type='MXFaceDataset',
        ...     data_root='data/faces_webface_112x112',
        ...     pipeline=[dict(type='FaceAugmenter'), dict(type='PackFaceInputs')])
    """

    def __init__(self,
                 data_root: str = '',
                 rec_file: str = 'train.rec',
                 idx_file: str = 'train.idx',
                 **kwargs) -> None:
        self.rec_file = osp.join(data_root, rec_file)
        self.idx_file = osp.join(data_root, idx_file)
        self._reader: Optional[RecordIOReader] = None
        super().__init__(data_root=data_root, **kwargs)

    @property
    def reader(self) -> RecordIOReader:
        """The reader of the ``.rec`` file (created on first use; reads by offset only)."""
        if self._reader is None:
            self._reader = RecordIOReader(self.rec_file)
        return self._reader

    def _image_keys(self, index: Dict[int, int]) -> List[int]:
        if 0 not in index:
            return list(index)
        offset = index[0]
        header = self.reader.read_header_at(offset)
        if header.flag == 0:
            return list(index)
        where = f'{self.rec_file}: header record 0 (offset {offset})'
        value = float(header.label[0])
        if not np.isfinite(value) or value != int(value) or value < 2:
            raise RecordIOError(f'{where} gives end index {value}: expected an integer >= 2 '
                                f'(images are keys 1..end-1)')
        end = int(value)
        # Every image key needs its own .idx line: count the keys present instead of listing
        # the missing ones, so a corrupt end index (3e9) costs no more than the index itself.
        present = sum(1 for k in index if 1 <= k < end)
        if present != end - 1:
            first = next(k for k in range(1, end) if k not in index)
            raise RecordIOError(
                f'{where} says images are keys 1..{end - 1}, but {self.idx_file} lacks '
                f'{end - 1 - present} of them (first: {first}; it holds {len(index)} records)')
        return list(range(1, end))

    def load_data_list(self) -> List[dict]:
        """Read every image record's header (labels) once; no image is decoded.

        The ``.idx`` table is used here only: offsets go into the data infos, so the table
        is not kept (it would cost ~100 bytes per image in every worker).
        """
        index = load_recordio_index(self.idx_file, self.reader.size)
        keys = self._image_keys(index)
        data_list = []
        for key in keys:
            offset = index[key]
            header = self.reader.read_header_at(offset)
            value = header.label[0] if header.flag > 0 else header.label
            try:
                label = self.check_label(value, len(keys),
                                         f'{self.rec_file}: record {key} (offset {offset})')
            except ValueError as err:
                raise RecordIOError(str(err)) from None
            data_list.append(
                dict(img_path=f'{self.rec_file}#{key}', gt_label=label, rec_offset=offset))
        self.set_classes_from_labels(
            np.array([info['gt_label'] for info in data_list], dtype=np.int64), self.rec_file)
        return data_list

    def read_image(self, data_info: dict) -> np.ndarray:
        """Read the record at ``rec_offset`` and decode its JPEG payload to BGR."""
        record = self.reader.read_at(data_info['rec_offset'])
        _, payload = unpack_ir_record(record, data_info['img_path'])
        return decode_image(payload, data_info['img_path'])
