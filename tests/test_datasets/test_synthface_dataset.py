"""Tests of SynthFaceDataset, the registered in-memory SynthFace data set."""
import numpy as np
import pytest

from mmoaml.datagen import TEST_ID_OFFSET, SynthFaceGenerator
from mmoaml.datasets import SynthFaceDataset
from mmoaml.registry import DATASETS
from mmoaml.utils import register_all_modules


def test_dataset_renders_lazily_with_known_labels(monkeypatch):
    register_all_modules()
    ds = DATASETS.build(dict(type='SynthFaceDataset', num_identities=3, images_per_identity=2,
                             seed=0))
    assert isinstance(ds, SynthFaceDataset) and len(ds) == 6
    calls = []
    monkeypatch.setattr(SynthFaceGenerator, 'render_face',
                        lambda *a, **k: calls.append(1) or pytest.fail('rendered'))
    np.testing.assert_array_equal(ds.get_gt_labels(), [0, 0, 1, 1, 2, 2])
    assert ds.get_cat_ids(3) == [1]
    assert ds.metainfo['classes'] == ('0', '1', '2')
    monkeypatch.undo()
    item = ds[3]
    assert item['img_path'] == 'synthface#3' and item['sample_idx'] == 3
    assert item['gt_label'] == 1 and 'visibility_mask' not in item
    expected = SynthFaceGenerator(seed=0).render_identity(1, 1).img
    np.testing.assert_array_equal(item['img'], expected)


def test_dataset_test_split_and_face_mask():
    ds = SynthFaceDataset(num_identities=2, images_per_identity=2, seed=0, split='test',
                          with_face_mask=True)
    item = ds[2]
    assert item['identity_id'] == TEST_ID_OFFSET + 1 and item['gt_label'] == 1
    face = SynthFaceGenerator(seed=0).render_identity(TEST_ID_OFFSET + 1, 0)
    np.testing.assert_array_equal(item['img'], face.img)
    np.testing.assert_array_equal(item['visibility_mask'], face.face_mask)
    with pytest.raises(ValueError, match='split'):
        SynthFaceDataset(split='val')
    with pytest.raises(ValueError, match='num_identities'):
        SynthFaceDataset(num_identities=0)
