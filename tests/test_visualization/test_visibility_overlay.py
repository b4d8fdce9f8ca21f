"""Visibility overlays: the tint formula per pixel, cell blocks, tile layout, checks."""
import numpy as np
import pytest

from mmoaml.visualization import draw_visibility_grid, overlay_visibility

GREEN, RED = np.array([0, 200, 0]), np.array([0, 0, 255])  # BGR tints: visible, hidden


def _expected(image, vis_pixels, alpha=0.45):
    """Blend by hand: (1 - alpha) * image + alpha * (v * green + (1 - v) * red), rounded."""
    v = vis_pixels[..., None].astype(np.float64)
    return np.rint((1 - alpha) * image + alpha * (v * GREEN + (1 - v) * RED))


def _face(h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_coarse_map_is_drawn_as_blocks_with_the_tint_formula():
    face = _face()
    vis = np.array([[1.0, 0.0], [0.25, 0.5]], np.float32)
    out = overlay_visibility(face, vis)
    blocks = np.kron(vis, np.ones((4, 4)))  # each cell covers a 4x4 block of the 8x8 face
    assert out.dtype == np.uint8 and out.shape == face.shape
    np.testing.assert_allclose(out, _expected(face, blocks), atol=1)
    # The channel order is BGR: a hidden cell gets more red (index 2), a visible one green.
    assert out[:4, 4:, 2].mean() > face[:4, 4:, 2].mean() * 0.55 + 100
    assert out[:4, :4, 1].mean() > face[:4, :4, 1].mean() * 0.55 + 80


def test_pixel_map_and_channel_first_map_and_alpha():
    face = _face(seed=1)
    mask = (np.arange(64).reshape(8, 8) % 3 == 0).astype(np.float32)
    np.testing.assert_allclose(overlay_visibility(face, mask[None], alpha=0.8),
                               _expected(face, mask, alpha=0.8), atol=1)
    assert np.array_equal(overlay_visibility(face, mask, alpha=0.0), face)


def test_grid_layout_prediction_then_ground_truth_per_tile():
    faces = [_face(seed=s) for s in range(5)]
    preds = [np.full((2, 2), s / 4, np.float32) for s in range(5)]
    gts = [np.eye(8, dtype=np.float32)] * 5
    grid = draw_visibility_grid(faces, preds, gts, ncols=3, pad=1)
    # 3 columns of 8 x 16 tiles (prediction | ground truth), 2 rows, 1 px padding.
    assert grid.shape == (2 * 9 + 1, 3 * 17 + 1, 3)
    for i, face in enumerate(faces):
        top, left = 1 + (i // 3) * 9, 1 + (i % 3) * 17
        np.testing.assert_allclose(grid[top:top + 8, left:left + 8],
                                   _expected(face, np.full((8, 8), i / 4)), atol=1)
        np.testing.assert_allclose(grid[top:top + 8, left + 8:left + 16],
                                   _expected(face, np.eye(8)), atol=1)
    # Padding and the unused last place stay black.
    assert not grid[0].any() and not grid[:, 0].any()
    assert not grid[10:18, 35:51].any()


def test_without_ground_truth_and_fewer_faces_than_columns():
    grid = draw_visibility_grid([_face()] * 2, [np.ones((2, 2))] * 2)
    assert grid.shape == (12, 22, 3)


def test_bad_inputs_are_reported():
    face = _face()
    with pytest.raises(ValueError, match='no images'):
        draw_visibility_grid([], [])
    with pytest.raises(ValueError, match='one map per image'):
        draw_visibility_grid([face, face], [np.ones((2, 2))])
    with pytest.raises(ValueError, match='one size'):
        draw_visibility_grid([face, _face(4, 4)], [np.ones((2, 2))] * 2)
    with pytest.raises(ValueError, match='uint8 BGR'):
        draw_visibility_grid([face.astype(np.float32)], [np.ones((2, 2))])
    with pytest.raises(ValueError, match='h x w map'):
        overlay_visibility(face, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match='ncols'):
        draw_visibility_grid([face], [np.ones((2, 2))], ncols=0)
