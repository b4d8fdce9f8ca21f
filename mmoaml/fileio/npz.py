"""Opening untrusted ``.npz`` archives without pickle."""
import os.path as osp
import zipfile

import numpy as np

__all__ = ['open_npz']


def open_npz(path: str, what: str) -> np.lib.npyio.NpzFile:
    """Open an ``.npz`` archive with ``allow_pickle=False``, so a crafted file cannot run code.

    Args:
        path (str): the ``.npz`` file.
        what (str): what the file holds, for the error messages, e.g. ``'feature dump'``.

    Returns:
        np.lib.npyio.NpzFile: the open archive; use it as a context manager to close it.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not a NumPy archive (a single ``.npy`` array included).
    """
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f'{path}: not a {what} .npz file ({error})') from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f'{path}: expected a {what} .npz archive, got a single array')
    return data
