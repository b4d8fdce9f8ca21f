"""BaseFaceDataset's corrupt-sample policy: raise naming the path, or skip deterministically."""
import logging

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger

from mmoaml.datasets import FaceFolderDataset
from mmoaml.fileio import CorruptImageError


@pytest.fixture
def root(tmp_path):
    """id0/{a,b,c}.png with b.png corrupt."""
    root = tmp_path / 'faces'
    (root / 'id0').mkdir(parents=True)
    for k, name in enumerate('abc'):
        img = np.full((6, 5, 3), 40 * k, np.uint8)
        assert cv2.imwrite(str(root / 'id0' / f'{name}.png'), img)
    (root / 'id0' / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    return root


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_corrupt_image_raises_naming_path_by_default(root):
    ds = FaceFolderDataset(data_root=str(root))
    assert ds[0]['img'][0, 0, 0] == 0
    with pytest.raises(CorruptImageError, match=r'id0/b\.png'):
        ds[1]


def test_missing_file_raises_naming_path(root):
    ds = FaceFolderDataset(data_root=str(root))
    (root / 'id0' / 'c.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'id0/c\.png'):
        ds[2]


def test_skip_corrupt_returns_next_sample_counts_and_warns(root):
    ds = FaceFolderDataset(data_root=str(root), skip_corrupt=True)
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        sample = ds[1]
    finally:
        logger.removeHandler(handler)
    # b.png is replaced by the next index (c.png, value 80), not a random one.
    assert sample['sample_idx'] == 2 and sample['img'][0, 0, 0] == 80
    assert ds.num_skipped == 1
    assert any('b.png' in m for m in handler.messages)
    assert ds[1]['sample_idx'] == 2 and ds.num_skipped == 2


def test_skip_wraps_around_and_fails_when_nothing_is_readable(root):
    (root / 'id0' / 'c.png').write_bytes(b'')
    ds = FaceFolderDataset(data_root=str(root), skip_corrupt=True)
    assert ds[2]['sample_idx'] == 0  # c, then wrap to a
    (root / 'id0' / 'a.png').unlink()
    with pytest.raises(RuntimeError, match='none of the 3 samples'):
        ds[0]
