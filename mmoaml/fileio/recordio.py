"""A pure-Python reader and writer of MXNet / InsightFace indexed RecordIO (``.rec`` + ``.idx``).

InsightFace distributes its training sets (``faces_webface_112x112``, ``faces_emore``, ...) as
MXNet RecordIO; this module reads and writes that format without MXNet. Format facts (dmlc-core
``recordio.h``/``recordio.cc``, MXNet ``python/mxnet/recordio.py``):

* A record is framed as ``magic`` (uint32 ``0xced7230a``, little endian), ``lrecord`` (uint32:
  continuation flag ``cflag`` in the upper 3 bits, payload length in the lower 29), the payload,
  and zero padding to a multiple of 4 bytes.
* ``cflag`` 0 = a whole record. A payload that contains the magic word at a 4-byte-aligned
  position is written in parts, split at each such word and the word dropped: ``cflag`` 1 =
  first part, 2 = middle, 3 = last; a reader joins the parts with the magic word between them.
  (This keeps the file splittable: every aligned magic word starts a record.)
* ``.idx`` is a text file, one ``<key>\\t<byte offset of the record>`` line per record.
* The payload of an image record starts with an ``IRHeader``: ``struct`` ``'IfQQ'`` (24 bytes:
  uint32 ``flag``, float32 ``label``, uint64 ``id``, uint64 ``id2``). ``flag > 0`` means the
  label is an array of ``flag`` float32 values that follows the header (the ``label`` field is
  then 0); the encoded image follows.

The reader opens the ``.rec`` file lazily in each process, so a dataset holding it can be
forked into DataLoader workers (a file descriptor inherited across ``fork`` shares its offset,
and concurrent ``seek``/``read`` from several workers would interleave), and it can be pickled
for ``spawn`` (the open file is not part of its state). Every length it reads (a part's
``lrecord``, a header's ``flag``) is checked against the bytes left in the ``.rec`` file
before anything is read or allocated, so a corrupt header costs at most the file's size.
"""
import os
import struct
from typing import BinaryIO, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    'RECORDIO_MAGIC', 'RecordIOError', 'IRHeader', 'pack_ir_record', 'unpack_ir_record',
    'load_recordio_index', 'RecordIOReader', 'RecordIOWriter', 'write_face_recordio'
]

RECORDIO_MAGIC = 0xced7230a
_MAGIC_BYTES = struct.pack('<I', RECORDIO_MAGIC)
_FRAME = struct.Struct('<II')
_IR = struct.Struct('<IfQQ')
_LENGTH_BITS = 29
_MAX_LENGTH = (1 << _LENGTH_BITS) - 1

Label = Union[float, np.ndarray]


class RecordIOError(ValueError):
    """A malformed ``.rec`` or ``.idx`` file; the message names the file and the offset."""


class IRHeader(NamedTuple):
    """MXNet's image-record header.

    Attributes:
        flag (int): 0 for a scalar label, else the length of the label array.
        label (float | np.ndarray): the scalar label, or the float32 label array.
        id (int): a record id (InsightFace: the record's key).
        id2 (int): a second id (unused by InsightFace).
    """
    flag: int
    label: Label
    id: int
    id2: int


def pack_ir_record(label: Union[float, Sequence[float], np.ndarray],
                   payload: bytes,
                   id: int = 0,
                   id2: int = 0) -> bytes:
    """Prefix ``payload`` with an ``IRHeader`` (MXNet ``recordio.pack``).

    Args:
        label: a number (``flag`` 0) or a sequence of numbers (stored as float32 after the
            header, ``flag`` = its length).
        payload (bytes): the encoded image (or empty, for header records).
        id (int): the header's ``id``. Defaults to 0.
        id2 (int): the header's ``id2``. Defaults to 0.

    Returns:
        bytes: header + label array (if any) + payload.
    """
    if np.ndim(label) == 0:
        return _IR.pack(0, float(label), id, id2) + bytes(payload)
    values = np.asarray(label, dtype='<f4').ravel()
    if values.size == 0:
        raise ValueError('pack_ir_record: an array label needs at least one value')
    return _IR.pack(values.size, 0.0, id, id2) + values.tobytes() + bytes(payload)


def unpack_ir_record(record: bytes, source: str = '<record>') -> Tuple[IRHeader, bytes]:
    """Split a record into its ``IRHeader`` and the remaining payload (MXNet ``unpack``).

    Args:
        record (bytes): the record's bytes.
        source (str): where the record came from, for error messages.

    Returns:
        tuple: ``(IRHeader, payload)``; ``header.label`` is a float, or a float32 array when
        ``flag > 0``.
    """
    if len(record) < _IR.size:
        raise RecordIOError(f'{source}: record of {len(record)} bytes is too short for an '
                            f'IRHeader ({_IR.size} bytes)')
    flag, label, id_, id2 = _IR.unpack_from(record)
    start = _IR.size
    if flag > 0:
        end = start + 4 * flag
        if len(record) < end:
            raise RecordIOError(f'{source}: IRHeader announces {flag} label values but the '
                                f'record holds {len(record) - start} bytes after the header')
        return IRHeader(flag, np.frombuffer(record, '<f4', flag, start).copy(), id_,
                        id2), bytes(record[end:])
    return IRHeader(flag, float(label), id_, id2), bytes(record[start:])


def load_recordio_index(idx_path: str, rec_size: Optional[int] = None) -> Dict[int, int]:
    """Read an ``.idx`` file into ``{key: offset}`` (file order kept).

    Args:
        idx_path (str): the ``.idx`` file.
        rec_size (int, optional): size of the ``.rec`` file; offsets at or past it are refused.

    Returns:
        dict[int, int]: record key -> byte offset in the ``.rec`` file.
    """
    if not os.path.isfile(idx_path):
        raise FileNotFoundError(f'RecordIO index file not found: {idx_path}')
    index: Dict[int, int] = {}
    with open(idx_path, encoding='ascii', errors='replace') as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                key, offset = int(fields[0]), int(fields[1])
                if len(fields) != 2:
                    raise ValueError
            except (ValueError, IndexError):
                raise RecordIOError(f'{idx_path}, line {n}: expected "<key>\\t<offset>", got '
                                    f'{line.rstrip()!r}') from None
            if key in index:
                raise RecordIOError(f'{idx_path}, line {n}: key {key} appears twice')
            if offset < 0 or (rec_size is not None and offset + _FRAME.size > rec_size):
                raise RecordIOError(f'{idx_path}, line {n}: offset {offset} of key {key} '
                                    f'points past the end of the .rec file ({rec_size} bytes)')
            index[key] = offset
    return index


class RecordIOReader:
    """Random access to the records of an (indexed) RecordIO file.

    Records are read by byte offset (:meth:`read_at`, :meth:`read_header_at`); the ``.idx``
    file, needed only for access by key, is loaded on first use of :attr:`index`, so a reader
    that is handed offsets (as ``MXFaceDataset``'s data infos are) never holds the index.

    Args:
        rec_path (str): the ``.rec`` file.
        idx_path (str, optional): its ``.idx`` file. Defaults to None (no access by key).
    """

    def __init__(self, rec_path: str, idx_path: Optional[str] = None) -> None:
        self.rec_path = str(rec_path)
        self.idx_path = None if idx_path is None else str(idx_path)
        if not os.path.isfile(self.rec_path):
            raise FileNotFoundError(f'RecordIO file not found: {self.rec_path}')
        self.size = os.path.getsize(self.rec_path)
        self._index: Optional[Dict[int, int]] = None
        self._file: Optional[BinaryIO] = None
        self._pid: Optional[int] = None

    @property
    def index(self) -> Dict[int, int]:
        """Record key -> offset, in ``.idx`` order (loaded on first access)."""
        if self._index is None:
            if self.idx_path is None:
                raise ValueError(f'{self.rec_path}: access by key needs an .idx file')
            self._index = load_recordio_index(self.idx_path, self.size)
        return self._index

    def _handle(self) -> BinaryIO:
        # One unbuffered handle per process: a handle inherited through fork shares its file
        # offset with the parent and the other workers.
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, 'rb', buffering=0)
            self._pid = os.getpid()
        return self._file

    def _read_exact(self, f: BinaryIO, n: int, offset: int, what: str) -> bytes:
        # FileIO.read(n) allocates n bytes before reading: a length field (up to 512 MiB, or
        # 16 GiB of label array) must be checked against the bytes left, not trusted.
        left = max(self.size - f.tell(), 0)
        if n > left:
            raise RecordIOError(f'{self.rec_path}: truncated record at offset {offset}: '
                                f'{what} needs {n} bytes, {left} left in the file')
        data = f.read(n)
        if len(data) != n:
            raise RecordIOError(f'{self.rec_path}: truncated record at offset {offset}: '
                                f'{what} needs {n} bytes, {len(data)} left in the file')
        return data

    def _read_frame(self, f: BinaryIO, offset: int) -> Tuple[int, int]:
        """Read a part's framing at ``offset``; returns ``(cflag, length)``."""
        magic, lrecord = _FRAME.unpack(self._read_exact(f, _FRAME.size, offset, 'the header'))
        if magic != RECORDIO_MAGIC:
            raise RecordIOError(f'{self.rec_path}: bad magic number 0x{magic:08x} at offset '
                                f'{offset} (expected 0x{RECORDIO_MAGIC:08x}); the file is '
                                f'corrupt or its index does not belong to it')
        cflag, length = lrecord >> _LENGTH_BITS, lrecord & _MAX_LENGTH
        if cflag > 3:
            raise RecordIOError(f'{self.rec_path}: invalid continuation flag {cflag} at offset '
                                f'{offset}')
        return cflag, length

    def read_at(self, offset: int) -> bytes:
        """The record starting at byte ``offset``, its parts joined.

        Raises:
            RecordIOError: bad magic, truncated data or a broken part sequence.
        """
        f = self._handle()
        f.seek(offset)
        pos, parts = offset, []
        while True:
            cflag, length = self._read_frame(f, pos)
            if (cflag in (0, 1)) != (not parts):
                raise RecordIOError(f'{self.rec_path}: record part with flag {cflag} at offset '
                                    f'{pos} out of sequence (record starting at {offset})')
            padded = (length + 3) & ~3
            parts.append(self._read_exact(f, padded, pos, 'the payload')[:length])
            pos += _FRAME.size + padded
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)

    def read(self, key: int) -> bytes:
        """The record with ``key``."""
        try:
            offset = self.index[key]
        except KeyError:
            raise KeyError(f'{self.idx_path}: no record with key {key}') from None
        return self.read_at(offset)

    def read_header_at(self, offset: int) -> IRHeader:
        """The ``IRHeader`` of the record at ``offset``, without reading its image.

        Reads the framing, the 24-byte header and the label array only (a whole record only
        in the rare case that its first part is shorter than that).
        """
        f = self._handle()
        f.seek(offset)
        cflag, length = self._read_frame(f, offset)
        source = f'{self.rec_path}#@{offset}'
        if cflag not in (0, 1):
            raise RecordIOError(f'{self.rec_path}: record at offset {offset} starts with a '
                                f'continuation part (flag {cflag})')
        if length < _IR.size:
            return unpack_ir_record(self.read_at(offset), source)[0]
        head = self._read_exact(f, _IR.size, offset, 'the IRHeader')
        flag = _IR.unpack(head)[0]
        if flag > 0:
            if length < _IR.size + 4 * flag:
                return unpack_ir_record(self.read_at(offset), source)[0]
            head += self._read_exact(f, 4 * flag, offset, 'the label array')
        return unpack_ir_record(head, source)[0]

    def close(self) -> None:
        """Close this process's handle (it is reopened on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_file'] = None
        state['_pid'] = None
        return state


class RecordIOWriter:
    """Write an indexed RecordIO pair that MXNet's ``MXIndexedRecordIO`` can read.

    Use as a context manager; records are framed (and split around aligned magic words) as
    dmlc-core's writer does.

    Args:
        rec_path (str): the ``.rec`` file to create.
        idx_path (str): the ``.idx`` file to create.
    """

    def __init__(self, rec_path: str, idx_path: str) -> None:
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path)
        self._rec = open(self.rec_path, 'wb')
        self._idx = open(self.idx_path, 'w', encoding='ascii')
        self._keys: set = set()

    def write(self, key: int, record: bytes) -> None:
        """Append ``record`` under ``key`` (an int, unique in the file)."""
        key = int(key)
        if key in self._keys:
            raise ValueError(f'{self.rec_path}: key {key} written twice')
        record = bytes(record)
        if len(record) > _MAX_LENGTH:
            raise ValueError(f'{self.rec_path}: record {key} has {len(record)} bytes; '
                             f'RecordIO records hold at most {_MAX_LENGTH}')
        self._keys.add(key)
        self._idx.write(f'{key}\t{self._rec.tell()}\n')
        start, split = 0, False
        pos = record.find(_MAGIC_BYTES)
        while pos != -1:
            # Only magic words at 4-byte-aligned positions split the record (dmlc-core).
            if pos % 4 == 0:
                self._write_part(2 if split else 1, record[start:pos])
                start, split = pos + 4, True
                pos = record.find(_MAGIC_BYTES, pos + 4)
            else:
                pos = record.find(_MAGIC_BYTES, pos + 1)
        self._write_part(3 if split else 0, record[start:])

    def _write_part(self, cflag: int, data: bytes) -> None:
        self._rec.write(_FRAME.pack(RECORDIO_MAGIC, (cflag << _LENGTH_BITS) | len(data)))
        self._rec.write(data)
        self._rec.write(b'\0' * (-len(data) % 4))

    def close(self) -> None:
        """Flush and close both files."""
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> 'RecordIOWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_face_recordio(rec_path: str, idx_path: str,
                        samples: Sequence[Tuple[bytes, Union[float, Sequence[float]]]]) -> None:
    """Write faces as an InsightFace-style RecordIO pair.

    Layout (docs/reference.md#recordio-layout): record 0 is a header record whose label is the
    array ``(N + 1, N + 1)`` (``flag`` 2): images are keys ``1..N``, and the second value, which
    InsightFace uses for the end of its optional per-identity range records, says there are
    none. Image record ``k`` carries ``IRHeader(flag, label, id=k, id2=0)`` and the encoded image.

    Args:
        rec_path (str): the ``.rec`` file to create.
        idx_path (str): the ``.idx`` file to create.
        samples: ``(encoded image, label)`` pairs; a label is a number or a sequence of numbers
            (the identity first, as InsightFace's readers take element 0).
    """
    end = len(samples) + 1
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write(0, pack_ir_record((end, end), b''))
        for key, (payload, label) in enumerate(samples, 1):
            writer.write(key, pack_ir_record(label, payload, id=key))
