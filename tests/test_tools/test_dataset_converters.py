"""tools/dataset_converters/folder_to_bin.py and folder_to_rec.py on tiny folders, read back with
the project's readers."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from mmoaml.datasets import MXFaceDataset
from mmoaml.fileio import decode_image, encode_image, load_verification_bin

TOOLS = Path(__file__).parents[2] / 'tools' / 'dataset_converters'


def _run(monkeypatch, tool, *argv):
    monkeypatch.setattr(sys, 'argv', [str(TOOLS / tool), *map(str, argv)])
    runpy.run_path(str(TOOLS / tool), run_name='__main__')


def _folder(root: Path, counts):
    """Identities ``id0..`` with ``counts[i]`` distinct 16x16 images; returns their bytes."""
    data = {}
    for i, count in enumerate(counts):
        (root / f'id{i}').mkdir(parents=True)
        for j in range(count):
            img = np.full((16, 16, 3), 10 * i + j, np.uint8)
            buf = encode_image(img, '.png')
            (root / f'id{i}' / f'{j}.png').write_bytes(buf)
            data[f'id{i}/{j}.png'] = buf
    (root / 'notes.txt').write_text('not an identity')
    return data


def test_folder_to_bin_balanced_seeded_pairs(tmp_path, monkeypatch, capsys):
    data = _folder(tmp_path / 'faces', [3, 1, 2, 4])
    out = tmp_path / 'val' / 'mine.bin'
    _run(monkeypatch, 'folder_to_bin.py', tmp_path / 'faces', out, '--num-pairs', 10)
    assert '10 pairs (5 same, 5 different)' in capsys.readouterr().out
    images, issame = load_verification_bin(str(out))
    assert len(images) == 20 and issame.sum() == 5
    listing = [line.split() for line in (tmp_path / 'val' / 'mine_pairs.txt').read_text()
               .splitlines()]
    for k, (a, b, same) in enumerate(listing):
        assert (images[2 * k], images[2 * k + 1]) == (data[a], data[b])
        assert bool(int(same)) == bool(issame[k]) == (a.split('/')[0] == b.split('/')[0])
        assert a != b
    assert decode_image(images[0], 'pair 0').shape == (16, 16, 3)
    # the same seed gives the same file, another seed other pairs
    again = tmp_path / 'again.bin'
    _run(monkeypatch, 'folder_to_bin.py', tmp_path / 'faces', again, '--num-pairs', 10)
    assert again.read_bytes() == out.read_bytes()
    _run(monkeypatch, 'folder_to_bin.py', tmp_path / 'faces', tmp_path / 'other.bin',
         '--num-pairs', 10, '--seed', 1)
    assert (tmp_path / 'other.bin').read_bytes() != out.read_bytes()


def test_folder_to_bin_refuses_folders_without_same_pairs(tmp_path, monkeypatch):
    _folder(tmp_path / 'faces', [1, 1])
    with pytest.raises(SystemExit, match='at least 2 identities and one with 2'):
        _run(monkeypatch, 'folder_to_bin.py', tmp_path / 'faces', tmp_path / 'x.bin')


def test_folder_to_rec_reads_back_with_mx_face_dataset(tmp_path, monkeypatch, capsys):
    data = _folder(tmp_path / 'faces', [2, 3, 1])
    out = tmp_path / 'rec'
    _run(monkeypatch, 'folder_to_rec.py', tmp_path / 'faces', out)
    assert 'num_classes=3' in capsys.readouterr().out
    dataset = MXFaceDataset(data_root=str(out), lazy_init=False, pipeline=[])
    assert len(dataset) == 6
    assert [dataset.get_data_info(i)['gt_label'] for i in range(6)] == [0, 0, 1, 1, 1, 2]
    assert len(dataset.metainfo['classes']) == 3
    assert (out / 'train_classes.txt').read_text().split() == ['id0', 'id1', 'id2']
    first = dataset[0]
    np.testing.assert_array_equal(first['img'], decode_image(data['id0/0.png'], 'x'))


def test_folder_to_rec_refuses_an_empty_folder(tmp_path, monkeypatch):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit, match='no identity folder with images'):
        _run(monkeypatch, 'folder_to_rec.py', tmp_path / 'empty', tmp_path / 'rec')
