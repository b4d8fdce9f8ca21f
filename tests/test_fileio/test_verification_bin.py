"""Verification .bin files: safe loading (nothing executed), structure checks, masks format."""
import io
import pickle
import pickletools
import struct

import numpy as np
import pytest

from mmoaml.fileio.verification_bin import (UnsafeVerificationBinError, dump_verification_bin,
                                            load_verification_bin, load_visibility_masks,
                                            masks_path_for, save_visibility_masks)

IMAGES = [b'img0', b'img1' * 100, b'\x00\xff' * 200, b'i3']
ISSAME = [True, False]


def _make_marker(path):
    with open(path, 'w') as f:
        f.write('code ran')
    return [b'a', b'b']


# Protocol 4: STACK_GLOBAL builtins.eval applied to '1+1' (a stock unpickler returns 2).
EVAL_STREAM = (b'\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94'
               b'\x8c\x04eval\x94\x93\x8c\x031+1\x94\x85R.')


def test_eval_stream_is_a_real_exploit():
    assert pickle.loads(EVAL_STREAM) == 2


class _Exploit:
    """Unpickling this calls _make_marker(marker): arbitrary code chosen by the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _make_marker, (self.marker, )


@pytest.mark.parametrize('protocol', [2, 4])
def test_dump_load_round_trip(tmp_path, protocol):
    path = tmp_path / 'set.bin'
    dump_verification_bin(str(path), IMAGES, ISSAME, protocol=protocol)
    images, issame = load_verification_bin(str(path))
    assert images == IMAGES and all(type(b) is bytes for b in images)
    assert issame.dtype == bool and issame.tolist() == ISSAME
    # Either protocol loads with a stock unpickler as InsightFace's load_bin calls it, and the
    # stream references no global at all.
    assert pickle.loads(path.read_bytes(), encoding='bytes') in ((IMAGES, ISSAME),
                                                                 [IMAGES, ISSAME])
    ops = {op.name for op, _, _ in pickletools.genops(path.read_bytes())}
    assert not ops & {'GLOBAL', 'STACK_GLOBAL', 'REDUCE', 'INST', 'OBJ', 'NEWOBJ'}


def test_protocol2_writes_python2_string_opcodes(tmp_path):
    path = tmp_path / 'py2.bin'
    dump_verification_bin(str(path), [b'ab', b'c' * 300], [True], protocol=2)
    expected = (b'\x80\x02](U\x02ab' + b'T' + struct.pack('<i', 300) + b'c' * 300 +
                b'e](\x88e\x86.')
    assert path.read_bytes() == expected


def test_loads_a_python2_stream_with_memo_opcodes(tmp_path):
    # What Python 2's cPickle (protocol 2) writes for (['ab', 'cd'], [False]): BINPUT memo
    # entries, SHORT_BINSTRING byte strings, NEWFALSE.
    stream = (b'\x80\x02]q\x00(U\x02abq\x01U\x02cdq\x02e]q\x03\x89a\x86q\x04.')
    path = tmp_path / 'lfw.bin'
    path.write_bytes(stream)
    images, issame = load_verification_bin(str(path))
    assert images == [b'ab', b'cd'] and issame.tolist() == [False]


def test_reduce_exploit_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / 'marker.txt'
    payload = pickle.dumps((_Exploit(str(marker)), [True]), protocol=2)
    # The file is a real exploit: a stock unpickler runs the function.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / 'evil.bin'
    path.write_bytes(payload)
    with pytest.raises(UnsafeVerificationBinError,
                       match=r'refusing to load .*evil\.bin.*global .*_make_marker'):
        load_verification_bin(str(path))
    assert not marker.exists()


@pytest.mark.parametrize('stream,name', [
    (b"cos\nsystem\n(S'touch /nonexistent/x'\ntR.", 'os.system'),
    (EVAL_STREAM, 'builtins.eval'),
])
def test_hand_written_global_streams_are_refused(tmp_path, stream, name):
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(stream)]
    assert ('REDUCE', None) in ops  # both streams call the global they name
    path = tmp_path / 'hand.bin'
    path.write_bytes(stream)
    with pytest.raises(UnsafeVerificationBinError, match=f'global {name}'):
        load_verification_bin(str(path))


def test_numpy_objects_are_refused(tmp_path):
    path = tmp_path / 'np.bin'
    path.write_bytes(pickle.dumps(([b'a', b'b'], [np.bool_(True)]), protocol=2))
    with pytest.raises(UnsafeVerificationBinError, match='numpy'):
        load_verification_bin(str(path))


@pytest.mark.parametrize('obj,match', [
    (([b'a', b'b', b'c'], [True]), '3 images for 1 pairs'),
    (([b'a', 'b'], [True]), 'image 1 is a str'),
    (([b'a', b'b'], [1]), r'issame\[0\] is a int'),
    (([b'a', b'b'], ), 'expected a pickled'),
    ({'images': [b'a']}, 'expected a pickled'),
])
def test_structure_is_validated(tmp_path, obj, match):
    path = tmp_path / 'odd.bin'
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(ValueError, match=match) as info:
        load_verification_bin(str(path))
    assert 'odd.bin' in str(info.value)


def test_not_a_pickle_and_missing_file(tmp_path):
    path = tmp_path / 'junk.bin'
    path.write_bytes(b'\x00\x01 definitely not a pickle')
    with pytest.raises(ValueError, match='junk.bin'):
        load_verification_bin(str(path))
    with pytest.raises(FileNotFoundError, match='absent.bin'):
        load_verification_bin(str(tmp_path / 'absent.bin'))


def test_dump_checks_pair_count(tmp_path):
    with pytest.raises(ValueError, match='2 images per pair'):
        dump_verification_bin(str(tmp_path / 'x.bin'), [b'a'], [True])
    with pytest.raises(ValueError, match='protocol'):
        dump_verification_bin(str(tmp_path / 'x.bin'), [b'a', b'b'], [True], protocol=3)


def test_masks_round_trip_and_path_convention(tmp_path):
    assert masks_path_for('/d/lfw_masked.bin') == '/d/lfw_masked_masks.npz'
    masks = np.random.default_rng(0).integers(0, 256, (4, 6, 5), dtype=np.uint8)
    path = tmp_path / 'lfw_masks.npz'
    save_visibility_masks(str(path), masks)
    np.testing.assert_array_equal(load_visibility_masks(str(path)), masks)


def test_masks_format_is_enforced(tmp_path):
    with pytest.raises(ValueError, match='uint8'):
        save_visibility_masks(str(tmp_path / 'a.npz'), np.zeros((2, 3, 3), np.float32))
    bad = tmp_path / 'float.npz'
    np.savez(bad, masks=np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match='float.npz'):
        load_visibility_masks(str(bad))
    objects = tmp_path / 'objects.npz'
    np.savez(objects, masks=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match='objects.npz'):
        load_visibility_masks(str(objects))
    other = tmp_path / 'other.npz'
    np.savez(other, something=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='no array named "masks"'):
        load_visibility_masks(str(other))
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'PK\x03\x04 broken zip')
    with pytest.raises(ValueError, match='junk.npz'):
        load_visibility_masks(str(junk))
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3, 3), np.uint8))
    single = tmp_path / 'single.npz'
    single.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match='single.npz'):
        load_visibility_masks(str(single))


@pytest.mark.parametrize('protocol', [0, 1, 2])
def test_python3_protocols_0_to_2_load_like_protocol_4(tmp_path, protocol):
    # Python 3 pickles bytes at these protocols as _codecs.encode(<str>, 'latin1').
    path = tmp_path / f'p{protocol}.bin'
    path.write_bytes(pickle.dumps((IMAGES, ISSAME), protocol=protocol))
    assert b'_codecs\nencode' in path.read_bytes()
    ref = tmp_path / 'p4.bin'
    ref.write_bytes(pickle.dumps((IMAGES, ISSAME), protocol=4))
    images, issame = load_verification_bin(str(path))
    ref_images, ref_issame = load_verification_bin(str(ref))
    assert images == ref_images == IMAGES and all(type(b) is bytes for b in images)
    assert issame.dtype == bool and issame.tolist() == ref_issame.tolist() == ISSAME


@pytest.mark.parametrize('args,shown', [
    (b"Vabc\nVutf8\n", r"'abc', 'utf8'"),
    (b"Vabc\nVlatin-1\n", r"'abc', 'latin-1'"),  # not a spelling pickle writes
    (b"S'abc'\nVlatin1\n", r"bytes, 'latin1'"),  # a Python 2 str loads as bytes
    (b"I7\nVlatin1\n", r"int, 'latin1'"),
    (b"Vabc\n", r"'abc'"),
    (b"Vabc\nVlatin1\nVstrict\n", r"'abc', 'latin1', 'strict'"),
])
def test_codecs_encode_is_allowed_only_with_a_str_and_latin1(tmp_path, args, shown):
    path = tmp_path / 'codecs.bin'
    path.write_bytes(b'c_codecs\nencode\n(' + args + b'tR.')
    with pytest.raises(UnsafeVerificationBinError,
                       match=r'refusing to load .*codecs\.bin: the pickle calls '
                       rf'_codecs\.encode\({shown}\)'):
        load_verification_bin(str(path))


def test_empty_file_and_empty_set_name_the_file(tmp_path):
    path = tmp_path / 'nothing.bin'
    path.write_bytes(b'')
    with pytest.raises(ValueError, match=r'nothing\.bin: empty file'):
        load_verification_bin(str(path))
    dump_verification_bin(str(path), [], [])
    with pytest.raises(ValueError, match=r'nothing\.bin: holds no pairs'):
        load_verification_bin(str(path))


@pytest.mark.parametrize('stream,match', [
    # BINBYTES8 announcing 512 MiB that the file does not hold.
    (b'\x80\x04\x8e' + struct.pack('<Q', 1 << 29) + b'abc.', r'opcode at byte 2: .*bytes8'),
    # LONG_BINPUT at memo index 2**24: the unpickler would grow its memo to 2**25 entries.
    (b'\x80\x02Nr' + struct.pack('<I', 1 << 24) + b'.', r'memo index 16777216 at byte 3'),
])
def test_lengths_and_memo_indices_are_checked_against_the_file(tmp_path, peak_memory, stream,
                                                               match):
    path = tmp_path / 'huge.bin'
    path.write_bytes(stream)
    with peak_memory() as peak:
        with pytest.raises(ValueError) as info:
            load_verification_bin(str(path))
    assert peak.bytes < 100 * 2**20
    info.match(rf'huge\.bin: .*{match}')


def test_masks_stored_as_0_1_are_scaled_per_file(tmp_path):
    binary = np.zeros((4, 6, 5), np.uint8)
    binary[0, :3] = 1
    binary[2] = 1  # mask 1 stays all zero: fully covered in either convention
    path = tmp_path / 'binary_masks.npz'
    save_visibility_masks(str(path), binary)
    np.testing.assert_array_equal(load_visibility_masks(str(path)), binary * 255)
    covered = tmp_path / 'covered_masks.npz'
    save_visibility_masks(str(covered), np.zeros((2, 3, 3), np.uint8))
    assert load_visibility_masks(str(covered)).max() == 0
    mixed = binary.copy()
    mixed[3] = 255
    save_visibility_masks(str(tmp_path / 'mixed_masks.npz'), mixed)
    with pytest.raises(ValueError, match=r'mixed_masks\.npz: mask 0 has largest value 1.*'
                       r'mixed'):
        load_visibility_masks(str(tmp_path / 'mixed_masks.npz'))
