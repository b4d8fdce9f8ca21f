"""VerificationBinDataset: pair layout, metainfo, visibility masks, refusal of skip_corrupt."""
import numpy as np
import pytest
import torch

from mmoaml.datasets import VerificationBinDataset
from mmoaml.fileio import dump_verification_bin, encode_image, save_visibility_masks
from mmoaml.registry import DATASETS


def _imgs(n, h=8, w=6):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def bin_file(tmp_path):
    imgs = _imgs(6)
    dump_verification_bin(str(tmp_path / 'lfw.bin'), [encode_image(i, '.png') for i in imgs],
                          [True, False, True])
    return tmp_path, imgs


def test_items_follow_pair_order(bin_file):
    root, imgs = bin_file
    ds = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin')
    assert len(ds) == 6 and ds.test_mode
    assert ds.metainfo['name'] == 'lfw' and ds.metainfo['num_pairs'] == 3
    assert ds.metainfo['mask_file'] is None
    for i in range(6):
        sample = ds[i]
        np.testing.assert_array_equal(sample['img'], imgs[i])
        assert sample['pair_idx'] == i // 2 and sample['sample_idx'] == i
        assert sample['issame'] == [True, False, True][i // 2]
        assert sample['img_path'] == f'{root}/lfw.bin#{i}'
        assert 'gt_label' not in sample and 'img_bytes' not in sample
        assert 'visibility_mask' not in sample


def test_name_override_lazy_init_and_registry(bin_file):
    root, _ = bin_file
    ds = DATASETS.build(dict(type='VerificationBinDataset', data_root=str(root),
                             ann_file='lfw.bin', name='LFW', lazy_init=True, _scope_='mmoaml'))
    assert ds.metainfo['name'] == 'LFW' and not ds._fully_initialized
    assert len(ds) == 6 and ds.metainfo['num_pairs'] == 3


def test_sibling_mask_file_gives_visibility_mask(bin_file):
    root, _ = bin_file
    masks = np.zeros((6, 8, 6), np.uint8)
    masks[:, :4] = 255
    masks[3, 5, 5] = 51
    save_visibility_masks(str(root / 'lfw_masks.npz'), masks)
    ds = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin')
    assert ds.metainfo['mask_file'] == f'{root}/lfw_masks.npz'
    vis = ds[3]['visibility_mask']
    assert vis.dtype == np.float32 and vis.shape == (8, 6)
    expected = np.zeros((8, 6), np.float32)
    expected[:4] = 1.0
    expected[5, 5] = 0.2
    np.testing.assert_allclose(vis, expected, atol=1e-7)


def test_explicit_mask_file_and_mismatches(bin_file):
    root, _ = bin_file
    save_visibility_masks(str(root / 'other.npz'), np.full((6, 8, 6), 255, np.uint8))
    ds = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin', mask_file='other.npz')
    assert ds[0]['visibility_mask'].min() == 1.0
    save_visibility_masks(str(root / 'five.npz'), np.full((5, 8, 6), 255, np.uint8))
    with pytest.raises(ValueError, match='5 masks for the 6 images'):
        VerificationBinDataset(data_root=str(root), ann_file='lfw.bin', mask_file='five.npz')
    save_visibility_masks(str(root / 'size.npz'), np.full((6, 7, 6), 255, np.uint8))
    ds = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin', mask_file='size.npz')
    with pytest.raises(ValueError, match=r'size\.npz#0.*lfw\.bin#0'):
        ds[0]
    with pytest.raises(FileNotFoundError, match='absent.npz'):
        VerificationBinDataset(data_root=str(root), ann_file='lfw.bin', mask_file='absent.npz')


def test_skip_corrupt_is_refused(bin_file):
    root, _ = bin_file
    with pytest.raises(ValueError, match='skip_corrupt'):
        VerificationBinDataset(data_root=str(root), ann_file='lfw.bin', skip_corrupt=True)


def test_packed_samples_carry_pair_metainfo(bin_file):
    root, imgs = bin_file
    ds = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin',
                                pipeline=[dict(type='PackFaceInputs', _scope_='mmoaml')])
    packed = ds[5]
    assert packed['inputs'].dtype == torch.uint8
    np.testing.assert_array_equal(packed['inputs'].numpy().transpose(1, 2, 0), imgs[5])
    meta = packed['data_samples'].metainfo
    assert meta['pair_idx'] == 2 and meta['issame'] is True and meta['sample_idx'] == 5


def test_zero_pair_bin_names_the_file(tmp_path):
    dump_verification_bin(str(tmp_path / 'none.bin'), [], [])
    with pytest.raises(ValueError, match=r'none\.bin: holds no pairs'):
        VerificationBinDataset(data_root=str(tmp_path), ann_file='none.bin')


def test_mask_file_stored_as_0_1_gives_visible_ones(bin_file):
    root, _ = bin_file
    masks = np.zeros((6, 8, 6), np.uint8)
    masks[:, :4] = 1
    save_visibility_masks(str(root / 'lfw_masks.npz'), masks)
    vis = VerificationBinDataset(data_root=str(root), ann_file='lfw.bin')[2]['visibility_mask']
    np.testing.assert_array_equal(vis, masks[2].astype(np.float32))
