"""Decoding/encoding helpers shared by every dataset: BGR out, clear errors naming the source."""
import cv2
import numpy as np
import pytest

from mmoaml.fileio.image import CorruptImageError, decode_image, encode_image, read_image


def _smooth_bgr(h=24, w=20):
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 10, ys * 8, 255 - xs * 5], -1).astype(np.uint8)


def test_png_round_trip_is_exact_and_bgr():
    img = _smooth_bgr()
    img[0, 0] = (255, 0, 0)  # pure blue in BGR
    out = decode_image(encode_image(img, '.png'), 'mem.png')
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, img)
    # Channel order: the first channel stays the blue one (what cv2.imwrite stored as blue).
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_jpeg_round_trip_is_close():
    img = _smooth_bgr()
    out = decode_image(encode_image(img, '.jpg', quality=95), 'mem.jpg')
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() < 3


def test_grayscale_and_bgra_become_three_channel_bgr():
    gray = _smooth_bgr()[..., 1].copy()
    out = decode_image(encode_image(gray, '.png'), 'gray.png')
    assert out.shape == gray.shape + (3, )
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    bgra = np.dstack([_smooth_bgr(), np.full((24, 20), 77, np.uint8)])
    out = decode_image(encode_image(bgra, '.png'), 'bgra.png')
    np.testing.assert_array_equal(out, bgra[..., :3])


@pytest.mark.parametrize('buf', [b'', b'not an image at all', b'\x89PNG\r\n\x1a\n' + b'\0' * 40])
def test_undecodable_bytes_raise_naming_source(buf):
    with pytest.raises(CorruptImageError, match='some/source#3'):
        decode_image(buf, 'some/source#3')


def test_truncated_jpeg_is_corrupt():
    # Some OpenCV builds return a truncated JPEG with grey rows; it must fail everywhere.
    data = encode_image(_smooth_bgr(64, 64), '.jpg')
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(CorruptImageError, match='half.jpg'):
            decode_image(data[:cut], 'half.jpg')


def test_corrupt_image_error_is_a_value_error():
    assert issubclass(CorruptImageError, ValueError)


def test_read_image_errors_name_the_path(tmp_path):
    missing = tmp_path / 'nope.jpg'
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        read_image(str(missing))
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8garbage\xff\xd9')
    with pytest.raises(CorruptImageError, match='bad.jpg'):
        read_image(str(bad))
    good = tmp_path / 'good.png'
    img = _smooth_bgr()
    good.write_bytes(encode_image(img, '.png'))
    np.testing.assert_array_equal(read_image(str(good)), img)
    # Same pixels as OpenCV's own file reader (the BGR convention of mmcv/cv2).
    np.testing.assert_array_equal(read_image(str(good)), cv2.imread(str(good)))


def test_encode_rejects_non_uint8():
    with pytest.raises(ValueError, match='uint8'):
        encode_image(np.zeros((4, 4, 3), np.float32))
