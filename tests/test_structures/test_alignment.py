import cv2
import numpy as np
import pytest

from mmoaml.structures import align_face, similarity_transform, template_points


def _similarity(scale, angle_deg, shift):
    theta = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return np.hstack([rot, np.asarray(shift, np.float64)[:, None]])


def test_similarity_transform_recovers_an_exact_similarity():
    src = template_points() + np.float32([3, -2])
    m = _similarity(1.7, 23.0, (40.0, -15.0))
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-9)


def test_similarity_transform_is_the_least_squares_fit():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 20
    dst = rng.normal(size=(5, 2)) * 20
    m = similarity_transform(src, dst)
    # The 2-D least-squares similarity in closed form (points as complex numbers).
    s, d = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    a = np.sum((d - d.mean()) * np.conj(s - s.mean())) / np.sum(np.abs(s - s.mean())**2)
    b = d.mean() - a * s.mean()
    expected = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    np.testing.assert_allclose(m, expected, atol=1e-9)
    # No reflection even for mirrored points.
    mirrored = similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) >= 0


@pytest.mark.parametrize('src, dst, match', [
    (np.zeros((5, 3)), np.zeros((5, 3)), r'\[N, 2\]'),
    (np.ones((5, 2)), np.zeros((5, 2)), 'coincide'),
    (np.arange(10.).reshape(5, 2), np.zeros((4, 2)), 'same shape'),
    (np.full((5, 2), np.nan), np.zeros((5, 2)), 'non-finite'),
])
def test_similarity_transform_refuses_bad_points(src, dst, match):
    with pytest.raises(ValueError, match=match):
        similarity_transform(src, dst)


def test_align_face_undoes_a_known_warp():
    rng = np.random.default_rng(1)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), 3)
    m = _similarity(2.0, -15.0, (60.0, 90.0))
    photo = cv2.warpAffine(crop, m, (360, 360), flags=cv2.INTER_LINEAR)
    landmarks = template_points() @ m[:, :2].T + m[:, 2]
    aligned, matrix = align_face(photo, landmarks, return_transform=True)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    np.testing.assert_allclose(matrix[:, :2] @ m[:, :2], np.eye(2), atol=1e-9)
    inner = (slice(8, -8), slice(8, -8))
    diff = np.abs(aligned[inner].astype(int) - crop[inner].astype(int))
    assert diff.mean() < 3


def test_align_face_sizes_and_errors():
    photo = np.zeros((200, 150, 3), np.float32)
    points = template_points() + 20
    assert align_face(photo, points, size=(64, 48)).shape == (64, 48, 3)
    assert align_face(photo, points).dtype == np.float32
    with pytest.raises(ValueError, match='H x W x 3'):
        align_face(np.zeros((20, 20)), points)
    with pytest.raises(ValueError, match=r'\[5, 2\]'):
        align_face(photo, points[:4])
