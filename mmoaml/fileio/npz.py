"""Opening untrusted ``.npz`` archives without pickle and without trusting their headers."""
import os.path as osp
import zipfile

import numpy as np

__all__ = ['open_npz', 'DEFLATE_MAX_RATIO']

#: Deflate expands at most about 1032:1, so an entry can hold no more than this many bytes per
#: compressed byte; an array header claiming more is a crafted or corrupt file.
DEFLATE_MAX_RATIO = 1032


def _check_entries(path: str, what: str) -> None:
    """Compare every array's header with what its zip entry can hold, before NumPy allocates.

    ``np.load`` reserves ``prod(shape) * itemsize`` bytes from an entry's ``.npy`` header
    before reading the data, so a few bytes of header could ask for any amount of memory.
    """
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith('.npy'):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                          np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(member)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            stored = info.compress_size if info.compress_type else info.file_size
            limit = info.file_size if info.compress_type == 0 else min(
                info.file_size, DEFLATE_MAX_RATIO * stored + 64)
            if nbytes > limit:
                raise ValueError(f'{path}: {what} entry {info.filename!r} declares an array of '
                                 f'{nbytes} bytes {tuple(shape)}, more than the {limit} bytes '
                                 'the archive can hold for it (crafted or corrupt file)')


def open_npz(path: str, what: str) -> np.lib.npyio.NpzFile:
    """Open an ``.npz`` archive with ``allow_pickle=False``, so a crafted file cannot run code,
    after checking each array header against the size of its entry (bounded memory).

    Args:
        path (str): the ``.npz`` file.
        what (str): what the file holds, for the error messages, e.g. ``'feature dump'``.

    Returns:
        np.lib.npyio.NpzFile: the open archive; use it as a context manager to close it.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not a NumPy archive (a single ``.npy`` array included), or an
            array header claims more than the archive holds.
    """
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    try:
        if zipfile.is_zipfile(path):
            _check_entries(path, what)
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if str(error).startswith(f'{path}: {what} entry'):
            raise
        raise ValueError(f'{path}: not a {what} .npz file ({error})') from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f'{path}: expected a {what} .npz archive, got a single array')
    return data
