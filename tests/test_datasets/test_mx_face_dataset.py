"""MXFaceDataset on RecordIO packs written by our writer: header record, labels, pixels, errors."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmoaml.datasets import MXFaceDataset
from mmoaml.fileio import (CorruptImageError, RecordIOError, RecordIOWriter, encode_image,
                           pack_ir_record, write_face_recordio)
from mmoaml.registry import DATASETS


def _img(seed):
    return np.random.default_rng(seed).integers(0, 256, (10, 8, 3), dtype=np.uint8)


def _smooth():
    ys, xs = np.mgrid[0:16, 0:16]
    return np.stack([xs * 12, ys * 12, 90 + xs * 4], -1).astype(np.uint8)


@pytest.fixture
def pack(tmp_path):
    """train.rec/.idx with header record 0, PNG images (scalar and array labels) and a JPEG."""
    imgs = [_img(k) for k in range(4)]
    samples = [(encode_image(imgs[0], '.png'), 0), (encode_image(imgs[1], '.png'), [2, 77]),
               (encode_image(imgs[2], '.png'), 1.0), (encode_image(imgs[3], '.png'), [0, 3, 1]),
               (encode_image(_smooth(), '.jpg', 95), 2)]
    write_face_recordio(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx'), samples)
    return tmp_path, imgs


def test_labels_classes_and_pixels(pack):
    root, imgs = pack
    ds = MXFaceDataset(data_root=str(root))
    assert len(ds) == 5
    assert ds.get_gt_labels().tolist() == [0, 2, 1, 0, 2]  # array labels: first element
    assert ds.metainfo['classes'] == ('0', '1', '2')
    for k in range(4):
        sample = ds[k]
        np.testing.assert_array_equal(sample['img'], imgs[k])  # PNG: exact, BGR as encoded
        assert sample['img_path'] == f'{root}/train.rec#{k + 1}'
        assert sample['sample_idx'] == k
    jpeg = ds[4]['img']
    assert np.abs(jpeg.astype(int) - _smooth()).mean() < 3


def test_labels_read_from_headers_without_decoding(pack, monkeypatch):
    root, _ = pack

    def no_decode(*args, **kwargs):
        raise AssertionError('an image was decoded while listing the dataset')

    monkeypatch.setattr(cv2, 'imdecode', no_decode)
    ds = MXFaceDataset(data_root=str(root), lazy_init=True)
    ds.full_init()
    assert ds.get_gt_labels().tolist() == [0, 2, 1, 0, 2]


def test_records_past_end_index_are_ignored(tmp_path):
    # InsightFace packs keep per-identity range records after the images; header 0 = (3, 5).
    with RecordIOWriter(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')) as w:
        w.write(0, pack_ir_record([3, 5], b''))
        w.write(1, pack_ir_record(4, encode_image(_img(0), '.png')))
        w.write(2, pack_ir_record(1, encode_image(_img(1), '.png')))
        w.write(3, pack_ir_record([1, 2], b''))
        w.write(4, pack_ir_record([2, 3], b''))
    ds = MXFaceDataset(data_root=str(tmp_path))
    assert len(ds) == 2 and ds.get_gt_labels().tolist() == [4, 1]
    assert len(ds.metainfo['classes']) == 5


def test_without_header_record_every_key_is_an_image(tmp_path):
    with RecordIOWriter(str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')) as w:
        for key, label in [(0, 1), (5, 0), (9, 1)]:  # record 0 is an image (flag 0)
            w.write(key, pack_ir_record(label, encode_image(_img(key), '.png')))
    ds = MXFaceDataset(data_root=str(tmp_path), rec_file='a.rec', idx_file='a.idx')
    assert ds.get_gt_labels().tolist() == [1, 0, 1]
    assert ds[2]['img_path'].endswith('a.rec#9')
    np.testing.assert_array_equal(ds[1]['img'], _img(5))


def test_header_record_pointing_at_missing_keys(tmp_path):
    with RecordIOWriter(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')) as w:
        w.write(0, pack_ir_record([4, 4], b''))
        w.write(1, pack_ir_record(0, b'x'))
    with pytest.raises(RecordIOError, match=r'train\.rec.*keys 1\.\.3.*first: 2'):
        MXFaceDataset(data_root=str(tmp_path))


def test_non_integer_label_is_refused(tmp_path):
    write_face_recordio(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx'),
                        [(b'x', 0.5)])
    with pytest.raises(RecordIOError, match='non-integer label'):
        MXFaceDataset(data_root=str(tmp_path))


def test_malformed_files_name_the_file(pack):
    root, _ = pack
    rec = root / 'train.rec'
    data = bytearray(rec.read_bytes())
    data[0] ^= 0xff  # breaks record 0's magic
    rec.write_bytes(bytes(data))
    with pytest.raises(RecordIOError, match=r'train\.rec.*bad magic'):
        MXFaceDataset(data_root=str(root))
    data[0] ^= 0xff
    rec.write_bytes(bytes(data[:len(data) - 20]))  # the last record loses its tail
    ds = MXFaceDataset(data_root=str(root))
    with pytest.raises(RecordIOError, match=r'train\.rec.*truncated'):
        ds[4]
    (root / 'train.idx').write_text('0\t0\n1\t99999999\n')
    with pytest.raises(RecordIOError, match=r'train\.idx.*past the end'):
        MXFaceDataset(data_root=str(root))


def test_corrupt_payload_raises_or_is_skipped(tmp_path):
    samples = [(encode_image(_img(0), '.png'), 0), (b'\xff\xd8 not a jpeg', 1),
               (encode_image(_img(2), '.png'), 1)]
    write_face_recordio(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx'), samples)
    with pytest.raises(CorruptImageError, match=r'train\.rec#2'):
        MXFaceDataset(data_root=str(tmp_path))[1]
    ds = MXFaceDataset(data_root=str(tmp_path), skip_corrupt=True)
    assert ds[1]['sample_idx'] == 2 and ds.num_skipped == 1


def test_forked_workers_read_the_right_records(pack):
    root, imgs = pack
    ds = DATASETS.build(dict(type='MXFaceDataset', data_root=str(root), _scope_='mmoaml'))
    ds[0]  # the parent opens its handle before the fork
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context='fork',
                        collate_fn=lambda s: (s['sample_idx'], torch.from_numpy(s['img'])))
    got = dict(loader)
    for k in range(4):
        np.testing.assert_array_equal(got[k].numpy(), imgs[k])


@pytest.mark.parametrize('end', [3e9, float('nan'), float('inf')])
def test_corrupt_end_index_is_refused_in_bounded_memory(tmp_path, peak_memory, end):
    with RecordIOWriter(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx')) as w:
        w.write(0, pack_ir_record([end, end], b''))
        w.write(1, pack_ir_record(0, encode_image(_img(0), '.png')))
    with peak_memory() as peak:
        with pytest.raises(RecordIOError, match=r'train\.rec: header record 0 \(offset 0\)'):
            MXFaceDataset(data_root=str(tmp_path))
    assert peak.bytes < 100 * 2**20


def test_label_too_large_for_the_pack_is_refused_in_bounded_memory(tmp_path, peak_memory):
    samples = [(encode_image(_img(0), '.png'), 0), (encode_image(_img(1), '.png'), [1e9, 3])]
    write_face_recordio(str(tmp_path / 'train.rec'), str(tmp_path / 'train.idx'), samples)
    with peak_memory() as peak:
        with pytest.raises(RecordIOError, match=r'train\.rec: record 2 \(offset \d+\): label '
                           r'1000000000 is too large for a file of 2 samples'):
            MXFaceDataset(data_root=str(tmp_path))
    assert peak.bytes < 100 * 2**20
