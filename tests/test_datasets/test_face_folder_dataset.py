"""FaceFolderDataset: identity folders or list files, labels without decoding, BGR pixels."""
import os

import cv2
import numpy as np
import pytest

from mmoaml.datasets import FaceFolderDataset
from mmoaml.registry import DATASETS


def _img(seed, h=14, w=12):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path):
    """root/{id_b: 2 png, id_a: 1 png + 1 JPG + notes.txt, id_empty: nothing}."""
    root = tmp_path / 'faces'
    files = {
        'id_b/1.png': _img(1),
        'id_b/0.png': _img(0),
        'id_a/x.png': _img(2),
    }
    for rel, img in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / rel), img)
    smooth = np.dstack([np.tile(np.arange(12, dtype=np.uint8) * 20, (14, 1))] * 3)
    assert cv2.imwrite(str(root / 'id_a' / 'y.JPG'), smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / 'id_a' / 'notes.txt').write_text('not an image')
    (root / 'id_empty').mkdir()
    return root, files, smooth


def test_scan_sorted_identities_labels_and_pixels(tree):
    root, files, smooth = tree
    ds = FaceFolderDataset(data_root=str(root))
    assert ds.metainfo['classes'] == ('id_a', 'id_b')
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    rel = [os.path.relpath(i['img_path'], root) for i in infos]
    assert rel == ['id_a/x.png', 'id_a/y.JPG', 'id_b/0.png', 'id_b/1.png']
    assert [i['gt_label'] for i in infos] == [0, 0, 1, 1]
    assert ds.get_gt_labels().tolist() == [0, 0, 1, 1]
    assert ds.get_cat_ids(3) == [1]
    sample = ds[2]
    np.testing.assert_array_equal(sample['img'], files['id_b/0.png'])  # BGR as written
    assert sample['sample_idx'] == 2 and sample['gt_label'] == 1
    assert sample['img_shape'] == (14, 12)
    jpeg = ds[1]['img']
    assert jpeg.shape == (14, 12, 3) and np.abs(jpeg.astype(int) - smooth).max() <= 8


def test_labels_are_learned_without_decoding(tree, monkeypatch):
    root, _, _ = tree

    def no_decode(*args, **kwargs):
        raise AssertionError('an image was decoded while listing the dataset')

    monkeypatch.setattr(cv2, 'imdecode', no_decode)
    ds = FaceFolderDataset(data_root=str(root), lazy_init=True)
    ds.full_init()
    assert ds.get_gt_labels().tolist() == [0, 0, 1, 1]


def test_lazy_init_and_registry_build(tree):
    root, _, _ = tree
    ds = DATASETS.build(dict(type='FaceFolderDataset', data_root=str(root), lazy_init=True,
                             _scope_='mmoaml'))
    assert isinstance(ds, FaceFolderDataset) and not ds._fully_initialized
    assert len(ds) == 4 and ds.metainfo['classes'] == ('id_a', 'id_b')


def test_list_file_with_labels(tree):
    root, files, _ = tree
    (root / 'list.txt').write_text('id_b/1.png 5\n\nid_a/x.png 2\n')
    ds = FaceFolderDataset(data_root=str(root), ann_file='list.txt')
    assert [ds.get_data_info(i)['gt_label'] for i in range(2)] == [5, 2]
    assert ds.metainfo['classes'] == tuple(str(k) for k in range(6))
    np.testing.assert_array_equal(ds[0]['img'], files['id_b/1.png'])


def test_list_file_paths_only_takes_parent_folder(tree):
    root, _, _ = tree
    (root / 'list.txt').write_text('id_b/1.png\nid_a/x.png\nid_b/0.png\n')
    ds = FaceFolderDataset(data_root=str(root), ann_file='list.txt')
    assert ds.metainfo['classes'] == ('id_a', 'id_b')
    assert [ds.get_data_info(i)['gt_label'] for i in range(3)] == [1, 0, 1]


@pytest.mark.parametrize('text,match', [
    ('id_b/1.png 1\nid_a/x.png\n', 'line 2'),
    ('id_b/1.png one\n', 'not an integer'),
    ('id_b/1.png 1 extra\n', 'line 1'),
    ('top.png\n', 'no identity folder'),
    ('\n\n', 'no sample'),
])
def test_list_file_errors_name_file_and_line(tree, text, match):
    root, _, _ = tree
    (root / 'bad_list.txt').write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        FaceFolderDataset(data_root=str(root), ann_file='bad_list.txt')
    assert 'bad_list.txt' in str(info.value)


def test_negative_label_and_missing_root(tmp_path, tree):
    root, _, _ = tree
    (root / 'neg.txt').write_text('id_b/1.png -1\n')
    with pytest.raises(ValueError, match='>= 0'):
        FaceFolderDataset(data_root=str(root), ann_file='neg.txt')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        FaceFolderDataset(data_root=str(tmp_path / 'nowhere'))
    (tmp_path / 'only_empty' / 'id').mkdir(parents=True)
    with pytest.raises(ValueError, match='no images'):
        FaceFolderDataset(data_root=str(tmp_path / 'only_empty'))


def test_label_too_large_for_the_list_is_refused_in_bounded_memory(tree, peak_memory):
    root, _, _ = tree
    (root / 'big.txt').write_text('id_b/1.png 0\nid_a/x.png 1000000000\n')
    with peak_memory() as peak:
        with pytest.raises(ValueError, match=r'big\.txt, line 2: label 1000000000 is too '
                           r'large for a file of 2 samples'):
            FaceFolderDataset(data_root=str(root), ann_file='big.txt')
    assert peak.bytes < 100 * 2**20
    # Gaps stay allowed: a subset keeps its full set's numbering.
    (root / 'subset.txt').write_text('id_b/1.png 9999\n')
    ds = FaceFolderDataset(data_root=str(root), ann_file='subset.txt')
    assert len(ds.metainfo['classes']) == 10000 and ds.get_gt_labels().tolist() == [9999]
