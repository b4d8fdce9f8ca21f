"""Image decoding and encoding shared by every mmoaml dataset (OpenCV, BGR).

Every source (folders, RecordIO payloads, verification ``.bin`` entries, occluded sets) decodes
through :func:`decode_image`, so all of them hand the pipeline the same thing: an
``H x W x 3`` uint8 array in BGR order (OpenCV's and MMCV's default). Only
``FaceDataPreprocessor`` changes the channel order.
"""
import cv2
import numpy as np

__all__ = ['CorruptImageError', 'decode_image', 'read_image', 'encode_image']

_JPEG_SOI = b'\xff\xd8'
_JPEG_EOI = b'\xff\xd9'


class CorruptImageError(ValueError):
    """Image bytes that cannot be decoded; the message names the source (file or container)."""


def decode_image(buf: bytes, source: str) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, BMP, ...) to BGR.

    Grayscale images are replicated to three channels and the alpha channel of BGRA images is
    dropped (OpenCV's ``IMREAD_COLOR``), so every face reaches the pipeline in one layout.

    A JPEG without an end-of-image marker is refused as truncated: libjpeg would otherwise
    return it with its missing rows filled grey and only print a warning, and a half-grey face
    in training is worse than a skipped or failed sample.

    Args:
        buf (bytes): the encoded image (``bytes``, ``bytearray``, ``memoryview`` or a uint8
            array).
        source (str): where the bytes came from (a path, or ``'<file>#<index>'`` for
            containers); used in error messages only.

    Returns:
        np.ndarray: ``H x W x 3`` uint8, BGR.

    Raises:
        CorruptImageError: empty, undecodable or truncated data; the message names ``source``.
    """
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if data.dtype != np.uint8 or data.ndim != 1:
        raise CorruptImageError(f'{source}: encoded image must be a flat byte buffer, got '
                                f'array of dtype {data.dtype} and shape {data.shape}')
    if data.size == 0:
        raise CorruptImageError(f'{source}: empty image data')
    if data[:2].tobytes() == _JPEG_SOI and _JPEG_EOI not in data.tobytes():
        raise CorruptImageError(f'{source}: truncated JPEG (no end-of-image marker)')
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise CorruptImageError(f'{source}: cannot decode image ({err})') from err
    if img is None or img.size == 0:
        raise CorruptImageError(f'{source}: cannot decode image ({data.size} bytes, not a '
                                f'supported image format or corrupt)')
    return img


def read_image(path: str) -> np.ndarray:
    """Read and decode the image file at ``path`` to ``H x W x 3`` uint8 BGR.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        CorruptImageError: the file cannot be decoded (the message names it).
    """
    try:
        with open(path, 'rb') as f:
            buf = f.read()
    except FileNotFoundError as err:
        raise FileNotFoundError(f'image file not found: {path}') from err
    return decode_image(buf, str(path))


def encode_image(img: np.ndarray, ext: str = '.jpg', quality: int = 95) -> bytes:
    """Encode an ``H x W x 3`` BGR (or ``H x W`` gray) uint8 image.

    Args:
        img (np.ndarray): the image, BGR like everything in mmoaml's pipelines.
        ext (str): the format, as a file extension (``'.jpg'``, ``'.png'``, ``'.bmp'``).
            Defaults to ``'.jpg'``.
        quality (int): JPEG quality (ignored by other formats). Defaults to 95, the quality
            of AdaFace's ``convert.py --make_image_files`` (docs/reference.md#image-folders).

    Returns:
        bytes: the encoded image.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or not (
            img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3, 4))):
        raise ValueError(f'encode_image: img must be an H x W (x 1|3|4) uint8 array, got '
                         f'{getattr(img, "shape", type(img))} {getattr(img, "dtype", "")}')
    params = []
    if ext.lower() in ('.jpg', '.jpeg'):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    try:
        ok, buf = cv2.imencode(ext, img, params)
    except cv2.error as err:
        raise ValueError(f'encode_image: cannot encode as {ext!r} ({err})') from err
    if not ok:
        raise ValueError(f'encode_image: cannot encode as {ext!r}')
    return buf.tobytes()
