"""InsightFace verification .bin files (LFW, CFP-FP, AgeDB-30, ...), loaded without running code.

Format (docs/reference.md#verification-bin-layout): a
pickle of ``(images, issame)``: ``images`` a list of ``2N`` encoded JPEG/PNG byte strings,
``issame`` a list of ``N`` booleans; pair ``k`` is images ``2k`` and ``2k + 1``. The published
files were pickled by Python 2 (protocol 2), where the byte strings are ``str`` objects; they
load as ``bytes`` with ``encoding='bytes'``.

Safety: a pickle can call any importable function while it loads. Such a file only ever holds
lists, tuples, byte strings and booleans, so :func:`load_verification_bin` unpickles with an
unpickler that resolves **one** global only: ``_codecs.encode``, which Python 3 pickles
(protocols 0-2) use to rebuild a byte string as ``_codecs.encode(<str>, 'latin1')``; it is
replaced by a function that performs exactly that call and refuses any other arguments. Every
other reference to a class or function (``os.system``, ``builtins.eval``, and equally
``numpy`` scalars or arrays) is refused before it can be called, with a
:class:`UnsafeVerificationBinError` naming the file and the global. Variants that store numpy
objects are deliberately not accepted: admitting numpy's reconstruction helpers would widen what
an untrusted file can make the loader do; convert such a file once, in a trusted environment,
with :func:`dump_verification_bin`. Before unpickling, every length and memo index in the
stream is checked against the file's size (the unpickler allocates a counted string before
reading it), so a corrupt file cannot make the loader allocate more than it holds.

Occluded variants may come with per-image ground-truth visibility masks in a sibling file
``<stem>_masks.npz`` (see :func:`save_visibility_masks`).
"""
import logging
import mmap
import os
import os.path as osp
import pickle
import pickletools
import struct
from typing import List, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from .npz import open_npz

__all__ = [
    'UnsafeVerificationBinError', 'load_verification_bin', 'dump_verification_bin',
    'masks_path_for', 'load_visibility_masks', 'save_visibility_masks'
]


class UnsafeVerificationBinError(pickle.UnpicklingError):
    """A ``.bin`` pickle that references a global (could run code); it is not loaded."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles only plain data (lists, tuples, bytes, str, numbers, bools) and the byte
    strings of Python 3's protocols 0-2 (``_codecs.encode(<str>, 'latin1')``)."""

    def __init__(self, file: mmap.mmap, source: str) -> None:
        super().__init__(file, encoding='bytes')
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) == ('_codecs', 'encode'):
            return self._latin1_bytes
        # Every other global, including numpy's, is refused: see the module docstring.
        raise UnsafeVerificationBinError(
            f'refusing to load {self._source}: the pickle references global {module}.{name} '
            f'(a verification .bin holds only byte strings and booleans; a global could run '
            f'code)')

    def _latin1_bytes(self, *args, **kwargs) -> bytes:
        """``_codecs.encode(text, 'latin1')`` for a ``str`` text, the only call allowed."""
        # 'latin1' is the one spelling CPython's picklers (C and Python) write.
        if (kwargs or len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str
                or args[1] != 'latin1'):
            shown = ', '.join(
                repr(a) if isinstance(a, str) and len(a) <= 32 else type(a).__name__
                for a in args)
            raise UnsafeVerificationBinError(
                f'refusing to load {self._source}: the pickle calls _codecs.encode({shown}'
                f'{", **kwargs" if kwargs else ""}); only _codecs.encode(<str>, \'latin1\'), '
                f'how Python 3 pickles a byte string, is allowed')
        return args[0].encode('latin1')

    def persistent_load(self, pid):
        raise UnsafeVerificationBinError(
            f'refusing to load {self._source}: the pickle uses persistent id {pid!r}')


#: Opcodes that store into the memo at an index given in the stream.
_MEMO_PUTS = frozenset(('PUT', 'BINPUT', 'LONG_BINPUT'))


def _check_stream(buf: mmap.mmap, size: int, path: str) -> None:
    """Refuse a pickle whose lengths or memo indices exceed what its ``size`` bytes can hold.

    The C unpickler allocates a counted string (``BINBYTES8``, ``BYTEARRAY8``) before reading
    it and grows its memo to twice a ``PUT`` index, so a 20-byte file could ask for gigabytes.
    ``pickletools.genops`` reads each argument from the mapping, which returns no more than
    the file holds, and fails on a short one; a memo index must be below the file's size
    (Python's picklers number memo entries 0, 1, 2, ..., each entry costs at least 2 bytes).
    """
    ops = pickletools.genops(buf)
    try:
        while True:
            pos = buf.tell()  # where the next opcode starts
            try:
                opcode, arg, _ = next(ops)
            except StopIteration:
                return
            except Exception as err:
                raise ValueError(f'{path}: not a readable verification .bin pickle (opcode at '
                                 f'byte {pos}: {type(err).__name__}: {err})') from err
            if opcode.name in _MEMO_PUTS and not 0 <= arg < size:
                raise ValueError(f'{path}: memo index {arg} at byte {pos} is beyond what a '
                                 f'file of {size} bytes can hold')
    finally:
        buf.seek(0)


def load_verification_bin(path: str) -> Tuple[List[bytes], np.ndarray]:
    """Load a verification ``.bin`` safely and check its structure.

    Args:
        path (str): the ``.bin`` file.

    Returns:
        tuple: ``(images, issame)``: ``2N`` encoded images as ``bytes`` and a bool ``[N]``
        array; pair ``k`` = ``images[2k], images[2k + 1]``.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeVerificationBinError: the pickle references a global other than
            ``_codecs.encode(<str>, 'latin1')`` (nothing is executed).
        ValueError: empty, not a pickle, a length or memo index beyond the file, or not
            ``(list of 2N byte strings, list of N bools)`` with ``N >= 1``.
    """
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'verification .bin not found: {path}')
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f'{path}: empty file (0 bytes), not a verification .bin')
        # A read-only mapping: read(n) never allocates more than the file holds, and the
        # images are copied once, into the unpickled byte strings.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _check_stream(buf, size, path)
            try:
                obj = _PlainDataUnpickler(buf, path).load()
            except UnsafeVerificationBinError:
                raise
            except Exception as err:
                raise ValueError(f'{path}: not a readable verification .bin pickle '
                                 f'({type(err).__name__}: {err})') from err
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f'{path}: expected a pickled (images, issame) pair, got '
                         f'{type(obj).__name__}' +
                         (f' of length {len(obj)}' if isinstance(obj, (tuple, list)) else ''))
    images, issame = obj
    if not isinstance(images, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise ValueError(f'{path}: images and issame must be lists, got '
                         f'{type(images).__name__} and {type(issame).__name__}')
    for i, img in enumerate(images):
        if not isinstance(img, (bytes, bytearray)):
            raise ValueError(f'{path}: image {i} is a {type(img).__name__}, expected an '
                             f'encoded byte string')
    for k, same in enumerate(issame):
        if not isinstance(same, bool):
            raise ValueError(f'{path}: issame[{k}] is a {type(same).__name__} ({same!r}), '
                             f'expected a bool')
    if len(images) != 2 * len(issame):
        raise ValueError(f'{path}: {len(images)} images for {len(issame)} pairs; a '
                         f'verification .bin holds exactly 2 images per pair')
    if not issame:
        raise ValueError(f'{path}: holds no pairs (an empty verification set)')
    return [bytes(img) for img in images], np.array(issame, dtype=bool)


def dump_verification_bin(path: str,
                          images: Sequence[bytes],
                          issame: Sequence[bool],
                          protocol: int = 4) -> None:
    """Write a verification ``.bin`` that InsightFace's readers and this module load.

    Args:
        path (str): the file to write.
        images (Sequence[bytes]): ``2N`` encoded images (pair ``k`` = images ``2k, 2k + 1``).
        issame (Sequence[bool]): ``N`` same-identity flags.
        protocol (int): 4 (Python 3 pickle, byte strings as ``bytes``) or 2 (the stream a
            Python 2 pickler writes for the published files: byte strings as ``BINSTRING``
            opcodes, no globals, loadable by Python 2 and by Python 3 with
            ``encoding='bytes'``). Python 3's own protocol 2 is not used: it pickles ``bytes``
            through a call to ``_codecs.encode``, a global that other safe loaders refuse
            (:func:`load_verification_bin` allows exactly that call). Defaults to 4.
    """
    images = [bytes(img) for img in images]
    flags = [bool(s) for s in np.asarray(issame, dtype=bool).ravel()]
    if len(images) != 2 * len(flags):
        raise ValueError(f'dump_verification_bin({path}): {len(images)} images for '
                         f'{len(flags)} pairs; need exactly 2 images per pair')
    if protocol == 4:
        data = pickle.dumps((images, flags), protocol=4)
    elif protocol == 2:
        data = _python2_pickle(images, flags)
    else:
        raise ValueError(f'dump_verification_bin: protocol must be 2 or 4, got {protocol}')
    with open(path, 'wb') as f:
        f.write(data)


def _python2_pickle(images: List[bytes], flags: List[bool]) -> bytes:
    """The protocol-2 opcode stream of ``(images, flags)`` as Python 2 writes it for ``str``."""
    out = bytearray(b'\x80\x02')  # PROTO 2
    out += b']('  # EMPTY_LIST, MARK
    for img in images:
        if len(img) < 256:
            out += b'U' + bytes([len(img)]) + img  # SHORT_BINSTRING
        else:
            out += b'T' + struct.pack('<i', len(img)) + img  # BINSTRING
    out += b'e'  # APPENDS
    out += b']('  # EMPTY_LIST, MARK
    out += b''.join(b'\x88' if s else b'\x89' for s in flags)  # NEWTRUE / NEWFALSE
    out += b'e\x86.'  # APPENDS, TUPLE2, STOP
    return bytes(out)


def masks_path_for(bin_path: str) -> str:
    """The conventional visibility-mask file of a ``.bin``: ``<dir>/<stem>_masks.npz``."""
    root, _ = osp.splitext(str(bin_path))
    return root + '_masks.npz'


def save_visibility_masks(path: str, masks: np.ndarray) -> None:
    """Save per-image ground-truth visibility masks of a verification set.

    Format (written by the occluded-benchmark generator, read by ``VerificationBinDataset``):
    a NumPy ``.npz`` with one array ``masks``: uint8 ``[2N, H, W]``, one mask per image of the
    ``.bin`` in the same order, 255 = visible face pixel, 0 = covered by an occluder or not
    face (background, the crop's canvas); intermediate values are fractional visibility
    (``value / 255``). No object arrays, so it loads with ``allow_pickle=False``.

    Args:
        path (str): the ``.npz`` file (conventionally :func:`masks_path_for` of the ``.bin``).
        masks (np.ndarray): uint8 ``[2N, H, W]``.
    """
    masks = np.asarray(masks)
    if masks.dtype != np.uint8 or masks.ndim != 3:
        raise ValueError(f'save_visibility_masks({path}): masks must be uint8 [2N, H, W], got '
                         f'{masks.dtype} {masks.shape}')
    with open(path, 'wb') as f:
        np.savez_compressed(f, masks=masks)


def load_visibility_masks(path: str) -> np.ndarray:
    """Load masks saved by :func:`save_visibility_masks` (no pickle allowed).

    Masks stored as 0/1 instead of 0/255 are read correctly, decided per file: when the largest
    value of the whole file is 1, every mask is scaled by 255 (with a warning); in 0/255 such a
    file would mean no pixel of any face is more than 1/255 visible. A file whose other masks
    reach higher values but where some mask's maximum is exactly 1 mixes the two conventions
    and is refused. An all-zero mask (fully covered) is the same in both conventions.

    Returns:
        np.ndarray: uint8 ``[2N, H, W]``, 255 = visible face.

    Raises:
        ValueError: not an ``.npz`` with a uint8 ``[2N, H, W]`` array ``masks``, or mixed 0/1
            and 0/255 masks (the message names the file and the first 0/1 mask).
    """
    path = str(path)
    with open_npz(path, 'visibility mask') as data:
        if 'masks' not in data.files:
            raise ValueError(f'{path}: no array named "masks" (found {data.files})')
        try:
            masks = data['masks']
        except ValueError as err:
            raise ValueError(f'{path}: cannot read "masks" ({err})') from err
    if masks.dtype != np.uint8 or masks.ndim != 3:
        raise ValueError(f'{path}: masks must be uint8 [2N, H, W], got {masks.dtype} '
                         f'{masks.shape}')
    if masks.size == 0:
        return masks
    peaks = masks.max(axis=(1, 2))
    if peaks.max() == 1:
        print_log(f'{path}: visibility masks stored as 0/1 (largest value 1); read as 0/255',
                  logger='current', level=logging.WARNING)
        masks *= 255
    elif (peaks == 1).any():
        first = int(np.flatnonzero(peaks == 1)[0])
        raise ValueError(f'{path}: mask {first} has largest value 1 while others reach '
                         f'{int(peaks.max())}: 0/1 and 0/255 masks mixed in one file (255 = '
                         f'visible face); store every mask as 0/255')
    return masks
