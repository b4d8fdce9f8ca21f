"""open_npz: pickle-free, and array headers checked against the archive before allocation."""
import io
import zipfile

import numpy as np
import pytest

from mmoaml.fileio import open_npz


def _npy_header(shape, dtype='<u1'):
    """A version 1.0 .npy header for ``shape`` (the format's definition, written by hand)."""
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, tuple(shape))
    total = 10 + len(text) + 1
    text += ' ' * ((64 - total % 64) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + len(text).to_bytes(2, 'little') + text.encode('latin1')


@pytest.mark.parametrize('compression', [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_header_claiming_more_than_the_entry_holds_is_refused(tmp_path, peak_memory,
                                                                 compression):
    path = tmp_path / 'masks.npz'
    with zipfile.ZipFile(path, 'w', compression) as archive:
        # 40 GB claimed, 16 bytes stored.
        archive.writestr('masks.npy', _npy_header((200000, 200000)) + bytes(16))
    with peak_memory() as peak, pytest.raises(ValueError, match=r'masks\.npz.*declares'):
        open_npz(path, 'visibility mask')
    assert peak.bytes < 100 * 2**20


def test_honest_archives_load(tmp_path):
    path = tmp_path / 'ok.npz'
    masks = np.arange(2 * 7 * 7, dtype=np.uint8).reshape(2, 7, 7)
    np.savez_compressed(path, masks=masks)
    with open_npz(path, 'visibility mask') as data:
        np.testing.assert_array_equal(data['masks'], masks)
    buffer = io.BytesIO()
    np.savez(buffer, masks=masks)
    (tmp_path / 'stored.npz').write_bytes(buffer.getvalue())
    with open_npz(tmp_path / 'stored.npz', 'visibility mask') as data:
        np.testing.assert_array_equal(data['masks'], masks)


def test_not_an_archive_is_named(tmp_path):
    (tmp_path / 'x.npz').write_text('hello')
    with pytest.raises(ValueError, match=r'x\.npz: not a visibility mask \.npz file'):
        open_npz(tmp_path / 'x.npz', 'visibility mask')
    with pytest.raises(FileNotFoundError, match='visibility mask file not found'):
        open_npz(tmp_path / 'missing.npz', 'visibility mask')
