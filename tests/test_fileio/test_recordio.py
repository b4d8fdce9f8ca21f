"""Pure-Python MXNet/InsightFace RecordIO: byte layout, multi-part records, malformed files."""
import os
import pickle
import struct

import numpy as np
import pytest

from mmoaml.fileio.recordio import (RecordIOError, RecordIOReader, RecordIOWriter,
                                    load_recordio_index, pack_ir_record, unpack_ir_record,
                                    write_face_recordio)

MAGIC = b'\x0a\x23\xd7\xce'  # 0xced7230a, little endian


def _frame(cflag, data):
    """One part as the format defines it: magic, (cflag << 29 | len), data, pad to 4."""
    return MAGIC + struct.pack('<I', (cflag << 29) | len(data)) + data + b'\0' * (-len(data) % 4)


def _write(tmp_path, records):
    rec, idx = tmp_path / 'x.rec', tmp_path / 'x.idx'
    with RecordIOWriter(str(rec), str(idx)) as w:
        for key, data in records:
            w.write(key, data)
    return rec, idx


def test_ir_header_layout_scalar_and_array():
    rec = pack_ir_record(7.0, b'JPEG', id=3, id2=9)
    # uint32 flag 0, float32 label 7.0, uint64 id 3, uint64 id2 9, then the payload.
    assert rec == (b'\0\0\0\0' + b'\x00\x00\xe0\x40' + (3).to_bytes(8, 'little') +
                   (9).to_bytes(8, 'little') + b'JPEG')
    header, payload = unpack_ir_record(rec)
    assert (header.flag, header.label, header.id, header.id2, payload) == (0, 7.0, 3, 9, b'JPEG')

    rec = pack_ir_record([5, 2.5], b'xy')
    assert rec[:4] == (2).to_bytes(4, 'little') and rec[4:8] == b'\0\0\0\0'
    assert rec[24:32] == b'\x00\x00\xa0\x40' + b'\x00\x00\x20\x40'  # 5.0f, 2.5f
    header, payload = unpack_ir_record(rec)
    assert header.flag == 2 and payload == b'xy'
    np.testing.assert_array_equal(header.label, [5.0, 2.5])


def test_unpack_rejects_short_records():
    with pytest.raises(RecordIOError, match='too short'):
        unpack_ir_record(b'\0' * 10, 'f.rec#1')
    with pytest.raises(RecordIOError, match='label values'):
        unpack_ir_record(struct.pack('<IfQQ', 3, 0, 0, 0) + b'\0' * 4, 'f.rec#1')


def test_writer_framing_and_index_by_hand(tmp_path):
    rec, idx = _write(tmp_path, [(0, b'abcde'), (7, b'12345678')])
    assert rec.read_bytes() == _frame(0, b'abcde') + _frame(0, b'12345678')
    assert idx.read_text() == f'0\t0\n7\t{len(_frame(0, b"abcde"))}\n'
    reader = RecordIOReader(str(rec), str(idx))
    assert reader.read(0) == b'abcde' and reader.read(7) == b'12345678'


def test_aligned_magic_splits_record_into_parts(tmp_path):
    data = b'AAAA' + MAGIC + b'BBBBBBBB' + MAGIC + b'CC'
    rec, idx = _write(tmp_path, [(1, data), (2, b'z' + MAGIC + b'zzz')])
    # Split at each aligned magic word (dropped): first part 1, middle 2, last 3. The second
    # record's magic is not 4-byte aligned: one plain record.
    assert rec.read_bytes() == (_frame(1, b'AAAA') + _frame(2, b'BBBBBBBB') + _frame(3, b'CC') +
                                _frame(0, b'z' + MAGIC + b'zzz'))
    reader = RecordIOReader(str(rec), str(idx))
    assert reader.read(1) == data
    assert reader.read(2) == b'z' + MAGIC + b'zzz'


def test_magic_at_start_and_end(tmp_path):
    data = MAGIC + b'abcd' + MAGIC
    rec, idx = _write(tmp_path, [(0, data)])
    assert rec.read_bytes() == _frame(1, b'') + _frame(2, b'abcd') + _frame(3, b'')
    assert RecordIOReader(str(rec), str(idx)).read(0) == data


def test_header_read_without_payload(tmp_path):
    rec, idx = _write(tmp_path, [(0, pack_ir_record([4, 9], b'')),
                                 (1, pack_ir_record(3, b'img' * 100))])
    reader = RecordIOReader(str(rec), str(idx))
    h0 = reader.read_header_at(reader.index[0])
    assert h0.flag == 2 and list(h0.label) == [4.0, 9.0]
    h1 = reader.read_header_at(reader.index[1])
    assert h1.flag == 0 and h1.label == 3.0


def test_header_inside_a_split_first_part(tmp_path):
    # The label value's bytes equal the magic word: the record is split inside its header.
    label_as_magic = np.frombuffer(MAGIC, '<f4')[0]
    record = pack_ir_record([1.0, label_as_magic], b'payload!')
    rec, idx = _write(tmp_path, [(0, record)])
    reader = RecordIOReader(str(rec), str(idx))
    assert rec.read_bytes()[:8] == MAGIC + struct.pack('<I', (1 << 29) | 28)
    header = reader.read_header_at(0)
    assert header.flag == 2 and header.label[0] == 1.0
    assert reader.read(0) == record


def test_write_face_recordio_header_record(tmp_path):
    rec, idx = tmp_path / 't.rec', tmp_path / 't.idx'
    write_face_recordio(str(rec), str(idx), [(b'a', 0), (b'b', [1, 5])])
    reader = RecordIOReader(str(rec), str(idx))
    assert list(reader.index) == [0, 1, 2]
    h0, p0 = unpack_ir_record(reader.read(0))
    assert h0.flag == 2 and list(h0.label) == [3.0, 3.0] and p0 == b''
    h2, p2 = unpack_ir_record(reader.read(2))
    assert h2.id == 2 and list(h2.label) == [1.0, 5.0] and p2 == b'b'


def test_bad_magic_names_file(tmp_path):
    rec, idx = _write(tmp_path, [(0, b'abcdefgh')])
    idx.write_text('0\t4\n')  # points into the middle of the record
    with pytest.raises(RecordIOError, match=r'x\.rec.*bad magic.*offset 4'):
        RecordIOReader(str(rec), str(idx)).read(0)


def test_truncated_record_names_file(tmp_path):
    rec, idx = _write(tmp_path, [(0, b'abcdefgh' * 4)])
    rec.write_bytes(rec.read_bytes()[:20])
    with pytest.raises(RecordIOError, match=r'x\.rec.*truncated'):
        RecordIOReader(str(rec), str(idx)).read(0)
    rec.write_bytes(rec.read_bytes()[:5])
    with pytest.raises(RecordIOError, match='past the end'):
        RecordIOReader(str(rec), str(idx)).read(0)


def test_missing_last_part_is_truncation(tmp_path):
    rec, idx = _write(tmp_path, [(0, b'AAAA' + MAGIC + b'BBBB')])
    rec.write_bytes(_frame(1, b'AAAA'))
    with pytest.raises(RecordIOError, match='truncated'):
        RecordIOReader(str(rec), str(idx)).read(0)


def test_part_out_of_sequence(tmp_path):
    rec, idx = tmp_path / 'x.rec', tmp_path / 'x.idx'
    rec.write_bytes(_frame(2, b'abcd'))
    idx.write_text('0\t0\n')
    with pytest.raises(RecordIOError, match='out of sequence'):
        RecordIOReader(str(rec), str(idx)).read(0)


def test_index_errors_name_the_index(tmp_path):
    rec, idx = _write(tmp_path, [(0, b'abcd')])
    idx.write_text('0\t0\n1\t9999\n')
    with pytest.raises(RecordIOError, match=r'x\.idx, line 2.*past the end'):
        load_recordio_index(str(idx), os.path.getsize(rec))
    idx.write_text('0\t0\nzero\t0\n')
    with pytest.raises(RecordIOError, match=r'x\.idx, line 2'):
        load_recordio_index(str(idx))
    idx.write_text('0\t0\n0\t0\n')
    with pytest.raises(RecordIOError, match='twice'):
        load_recordio_index(str(idx))
    with pytest.raises(FileNotFoundError, match='nothere.idx'):
        load_recordio_index(str(tmp_path / 'nothere.idx'))


def test_reader_reopens_per_process_and_pickles_without_handle(tmp_path, monkeypatch):
    rec, idx = _write(tmp_path, [(0, b'abcd'), (1, b'efgh')])
    reader = RecordIOReader(str(rec), str(idx))
    assert reader.read(0) == b'abcd'
    parent_handle = reader._file
    # A forked DataLoader worker has another pid: it must open its own handle, since an
    # inherited descriptor shares its file offset with the parent and the other workers.
    monkeypatch.setattr(os, 'getpid', lambda: -12345)
    assert reader.read(1) == b'efgh'
    assert reader._file is not parent_handle and not parent_handle.closed
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._file is None
    assert clone.read(1) == b'efgh'


def _frames_by_definition(record):
    """dmlc-core's rule, step by step: split at every magic word at a multiple of 4."""
    out, start, split = b'', 0, False
    for pos in range(0, len(record) - 3, 4):
        if record[pos:pos + 4] == MAGIC:
            out += _frame(2 if split else 1, record[start:pos])
            start, split = pos + 4, True
    return out + _frame(3 if split else 0, record[start:])


def test_splitting_matches_the_definition_on_dense_magic(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [MAGIC, MAGIC[:2], MAGIC[1:], b'x', b'yz', b'\x0a\x23\xd7']
    for trial in range(30):
        record = b''.join(pieces[k] for k in rng.integers(0, len(pieces), 12))
        rec, idx = _write(tmp_path, [(0, record)])
        assert rec.read_bytes() == _frames_by_definition(record), record
        assert RecordIOReader(str(rec), str(idx)).read(0) == record


def test_length_fields_are_checked_against_the_file_size(tmp_path, peak_memory):
    # A part claiming the largest length (512 MiB) whose payload is an IRHeader announcing a
    # label array that fills it: both lengths must be refused before anything is read.
    length = (1 << 29) - 1
    flag = (length - 24) // 4
    rec, idx = tmp_path / 'x.rec', tmp_path / 'x.idx'
    rec.write_bytes(MAGIC + struct.pack('<I', length) + struct.pack('<IfQQ', flag, 0, 0, 0))
    idx.write_text('0\t0\n')
    reader = RecordIOReader(str(rec), str(idx))
    with peak_memory() as peak:
        with pytest.raises(RecordIOError, match=r'x\.rec: truncated record at offset 0: the '
                           r'payload needs 536870912 bytes, 24 left'):
            reader.read(0)
        with pytest.raises(RecordIOError, match=r'x\.rec: truncated record at offset 0: the '
                           r'label array needs \d+ bytes, 0 left'):
            reader.read_header_at(0)
    assert peak.bytes < 100 * 2**20
