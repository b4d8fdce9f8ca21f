"""Face alignment: a least-squares similarity from five landmarks onto the ArcFace template.

A photo becomes the 112x112 crop every mmoaml model expects by the warp that takes its five
landmarks (left eye, right eye, nose tip, left and right mouth corners, (x, y) in pixels) onto
:func:`~mmoaml.structures.template_points` with the smallest squared error, allowing rotation,
uniform scale and shift only (no shear, no reflection), as insightface's ``face_align`` does.
The channel order is kept: a BGR photo gives a BGR crop (docs/alignment.md).
"""
from typing import Tuple, Union

import cv2
import numpy as np

from .face_template import template_points

__all__ = ['similarity_transform', 'align_face']


def _points(points, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 2:
        raise ValueError(f'{name} must be [N, 2] (x, y) points with N >= 2, got shape {p.shape}')
    if not np.isfinite(p).all():
        raise ValueError(f'{name} holds non-finite coordinates: {p.tolist()}')
    return p


def similarity_transform(src, dst) -> np.ndarray:
    """Least-squares similarity taking the points ``src`` onto ``dst`` (Umeyama, 1991).

    Minimises ``sum_i |s R src_i + t - dst_i|^2`` over a rotation ``R`` (determinant +1),
    a scale ``s >= 0`` and a shift ``t``: ``R`` from the SVD of the cross-covariance of the
    centred points (its smaller singular direction flipped when the SVD would give a
    reflection), ``s = trace(D S) / var(src)``, ``t = mean(dst) - s R mean(src)``.

    Args:
        src (array-like): ``[N, 2]`` (x, y) source points, ``N >= 2``, not all equal.
        dst (array-like): ``[N, 2]`` target points.

    Returns:
        np.ndarray: ``[2, 3]`` float64 affine matrix ``[s R | t]`` (the ``M`` of
        ``cv2.warpAffine``).

    Examples:
        >>> import numpy as np
        >>> src = np.array([[0., 0.], [1., 0.], [0., 1.]])
        >>> (similarity_transform(src, 2 * src + 3).round(6) + 0.0).tolist()
        [[2.0, 0.0, 3.0], [0.0, 2.0, 3.0]]
    """
    s = _points(src, 'src')
    d = _points(dst, 'dst')
    if s.shape != d.shape:
        raise ValueError(f'src and dst must have the same shape, got {s.shape} and {d.shape}')
    mean_s, mean_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mean_s, d - mean_d
    var_s = float((sc**2).sum()) / len(s)
    if var_s <= 1e-12:
        raise ValueError(f'src points all coincide, no similarity is defined: {s.tolist()}')
    cov = dc.T @ sc / len(s)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum()) / var_s
    shift = mean_d - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray,
               landmarks,
               size: Tuple[int, int] = (112, 112),
               return_transform: bool = False,
               border_value: Union[int, float] = 0
               ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Warp a photo so that its five landmarks land on the ArcFace template of an ``(H, W)`` crop.

    Args:
        image (np.ndarray): ``H' x W' x 3`` (any channel order, kept) uint8 or float image.
        landmarks (array-like): ``[5, 2]`` (x, y) pixel coordinates in ``image`` of the left
            eye, right eye, nose tip, left and right mouth corners (the subject's left is on
            the image's left, as in ``ARCFACE_TEMPLATE_112``).
        size (tuple[int, int]): ``(H, W)`` of the crop. Defaults to ``(112, 112)``.
        return_transform (bool): also return the ``[2, 3]`` matrix. Defaults to False.
        border_value (int | float): fill of the crop outside the photo. Defaults to 0 (black).

    Returns:
        np.ndarray | tuple: ``H x W x 3`` crop of ``image``'s dtype (bilinear warp), and with
        ``return_transform`` the matrix from photo to crop pixels.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) == 0:
        raise ValueError(f'align_face: image must be H x W x 3, got shape {image.shape}')
    points = _points(landmarks, 'landmarks')
    if points.shape != (5, 2):
        raise ValueError(f'align_face: landmarks must be [5, 2] (x, y), got {points.shape}')
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f'align_face: size must be positive (H, W), got {size}')
    matrix = similarity_transform(points, template_points((h, w)))
    crop = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(border_value, ) * 3)
    return (crop, matrix) if return_transform else crop
