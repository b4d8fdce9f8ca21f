"""OccludedFaceDataset: images with single-channel visibility masks (255 = visible face)."""
import cv2
import numpy as np
import pytest

from mmoaml.datasets import OccludedFaceDataset
from mmoaml.fileio import CorruptImageError


def _img(seed):
    return np.random.default_rng(seed).integers(0, 256, (10, 8, 3), dtype=np.uint8)


def _mask(seed):
    return np.random.default_rng(100 + seed).choice(np.array([0, 255, 128], np.uint8), (10, 8))


@pytest.fixture
def root(tmp_path):
    root = tmp_path / 'occ'
    for k, rel in enumerate(['p2/a', 'p1/b', 'p1/c']):
        (root / 'images' / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / 'masks' / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / 'images' / f'{rel}.png'), _img(k))
        assert cv2.imwrite(str(root / 'masks' / f'{rel}.png'), _mask(k))
    return root


def test_images_masks_and_labels(root):
    ds = OccludedFaceDataset(data_root=str(root))
    assert ds.metainfo['classes'] == ('p1', 'p2')
    assert ds.get_gt_labels().tolist() == [0, 0, 1]
    sample = ds[2]  # p2/a
    np.testing.assert_array_equal(sample['img'], _img(0))
    vis = sample['visibility_mask']
    assert vis.dtype == np.float32 and vis.shape == (10, 8)
    np.testing.assert_allclose(vis, _mask(0).astype(np.float64) / 255, atol=1e-7)
    assert set(np.unique(vis).tolist()) <= {0.0, 1.0, np.float32(128 / 255)}
    assert sample['mask_path'].endswith('masks/p2/a.png')


def test_custom_dirs_and_list_file(root):
    (root / 'images').rename(root / 'imgs')
    (root / 'masks').rename(root / 'vis')
    (root / 'list.txt').write_text('p1/c.png\n')
    ds = OccludedFaceDataset(data_root=str(root), img_dir='imgs', mask_dir='vis',
                             ann_file='list.txt')
    assert len(ds) == 1 and ds.metainfo['classes'] == ('p1', )
    np.testing.assert_allclose(ds[0]['visibility_mask'], _mask(2) / 255, atol=1e-7)


def test_missing_mask_names_both_paths(root):
    (root / 'masks' / 'p1' / 'b.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'images/p1/b\.png.*masks/p1/b\.png'):
        OccludedFaceDataset(data_root=str(root))


def test_mask_size_channels_and_corruption(root):
    ds = OccludedFaceDataset(data_root=str(root))
    assert cv2.imwrite(str(root / 'masks' / 'p1' / 'b.png'), np.zeros((9, 8), np.uint8))
    with pytest.raises(ValueError, match=r'masks/p1/b\.png.*differs.*images/p1/b\.png'):
        ds[0]
    assert cv2.imwrite(str(root / 'masks' / 'p1' / 'b.png'), np.zeros((10, 8, 3), np.uint8))
    with pytest.raises(ValueError, match='single-channel'):
        ds[0]
    (root / 'masks' / 'p1' / 'b.png').write_bytes(b'garbage')
    with pytest.raises(CorruptImageError, match=r'masks/p1/b\.png'):
        ds[0]


def test_masks_stored_as_0_1_are_read_as_visibility(root):
    binary = (_mask(1) > 0).astype(np.uint8)  # 1 = visible, as a 0/1 writer stores it
    assert cv2.imwrite(str(root / 'masks' / 'p1' / 'b.png'), binary)
    assert cv2.imwrite(str(root / 'masks' / 'p1' / 'c.png'), np.zeros((10, 8), np.uint8))
    ds = OccludedFaceDataset(data_root=str(root))
    np.testing.assert_array_equal(ds[0]['visibility_mask'], binary.astype(np.float32))
    assert ds[1]['visibility_mask'].max() == 0.0  # all zero: fully covered in either form
