"""FaceAugmenter: AdaFace's crop / low-res / photometric / flip steps and the visibility mask."""
import math

import numpy as np
import pytest

from mmoaml.datasets.transforms import FaceAugmenter
from mmoaml.registry import TRANSFORMS
from mmoaml.structures import face_region_prior


class _FixedDraws:
    """A generator stand-in returning preset values, to pin factors and order."""

    def __init__(self, uniforms, order=(0, 1, 2)):
        self.uniforms = list(uniforms)
        self.order = np.array(order)

    def uniform(self, low, high):
        value = self.uniforms.pop(0)
        assert low <= value <= high
        return value

    def permutation(self, n):
        return self.order


def _only(**probs):
    cfg = dict(crop_prob=0.0, lowres_prob=0.0, photometric_prob=0.0, flip_prob=0.0)
    cfg.update(probs)
    return FaceAugmenter(**cfg)


def test_reference_defaults():
    aug = FaceAugmenter()
    assert (aug.crop_prob, aug.lowres_prob, aug.photometric_prob, aug.flip_prob) == (0.2, 0.2, 0.2,
                                                                                    0.5)
    assert aug.crop_scale == (0.2, 1.0) and aug.lowres_ratio == (0.2, 1.0)
    assert aug.crop_ratio == pytest.approx((3 / 4, 4 / 3)) and aug.jitter == (0.5, 0.5, 0.5)


def test_crop_keeps_a_box_in_place_and_zeroes_the_rest(noise_face):
    aug = _only(crop_prob=1.0)
    np.random.seed(0)
    for _ in range(20):
        vis_in = np.random.rand(112, 112).astype(np.float32) * 0.5 + 0.5
        out = aug(dict(img=noise_face, visibility_mask=vis_in))
        img, vis = out['img'], out['visibility_mask']
        kept = (img == noise_face).all(2) & (vis == vis_in)
        rows, cols = np.nonzero(kept)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert kept[box].all(), 'the kept region is one axis-aligned box at its own place'
        outside = np.ones((112, 112), bool)
        outside[box] = False
        assert (img[outside] == 0).all() and (vis[outside] == 0).all()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 0.2 * 112 * 112 - 2 * 112 <= h * w <= 112 * 112


def test_crop_box_follows_random_resized_crop_sampling():
    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, h, w = FaceAugmenter.crop_box(rng, (112, 112), (0.2, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 112 and 0 <= left and left + w <= 112
        # w, h are rounded from sqrt(area * ratio) and sqrt(area / ratio).
        assert 0.2 * 112 * 112 * 0.9 <= h * w <= 112 * 112
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    # No try fits (area fraction > 1): the central box at the closest ratio bound.
    assert FaceAugmenter.crop_box(rng, (100, 200), (5.0, 5.0), (3 / 4, 4 / 3)) == (0, 33, 100, 133)


def test_flip_mirrors_image_and_mask(noise_face):
    vis_in = np.random.default_rng(0).random((112, 112)).astype(np.float32)
    out = _only(flip_prob=1.0)(dict(img=noise_face, visibility_mask=vis_in))
    np.testing.assert_array_equal(out['img'], noise_face[:, ::-1])
    np.testing.assert_array_equal(out['visibility_mask'], vis_in[:, ::-1])
    assert out['img'].flags.c_contiguous and out['visibility_mask'].flags.c_contiguous


def test_missing_mask_starts_from_face_prior(noise_face):
    out = _only(flip_prob=1.0)(dict(img=noise_face))
    np.testing.assert_array_equal(out['visibility_mask'], face_region_prior((112, 112))[:, ::-1])
    untouched = _only()(dict(img=noise_face))
    np.testing.assert_array_equal(untouched['visibility_mask'], face_region_prior((112, 112)))
    assert untouched['img'] is noise_face


def test_low_resolution_loses_detail_but_keeps_size_and_mask(noise_face):
    vis_in = np.ones((112, 112), np.float32)
    out = _only(lowres_prob=1.0)
    out.lowres_ratio = (0.25, 0.25)
    res = out(dict(img=noise_face, visibility_mask=vis_in))
    assert res['img'].shape == (112, 112, 3) and res['img'].dtype == np.uint8
    assert res['visibility_mask'] is vis_in
    # Noise survives a 28 px round trip only as a blur: far lower pixel-to-pixel variation.
    detail = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    assert detail(res['img']) < 0.6 * detail(noise_face)


def test_photometric_known_answers_with_bgr_luma():
    img = np.array([[[200, 40, 10], [10, 40, 200], [90, 160, 60]]], np.uint8)  # B, G, R
    grey = 0.114 * img[..., 0] + 0.587 * img[..., 1] + 0.299 * img[..., 2]

    for f in (0.0, 0.5, 1.7):
        sat = FaceAugmenter.photometric(_FixedDraws([1.0, 1.0, f], order=(2, 0, 1)), img,
                                        (0.5, 0.5, 1.0))
        expected = np.clip(f * img + (1 - f) * grey[..., None], 0, 255)
        assert np.abs(sat.astype(float) - expected).max() <= 1.0
    # Fully desaturated (f = 0) the output is the BGR luma. The reference's PIL grey on BGR
    # arrays swaps the red and blue weights (the first two pixels would differ by 35 levels).
    swapped = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    desaturated = FaceAugmenter.photometric(_FixedDraws([1.0, 1.0, 0.0]), img, (0.5, 0.5, 1.0))
    assert np.abs(desaturated[..., 0].astype(float) - swapped).max() > 30

    contrast = FaceAugmenter.photometric(_FixedDraws([1.0, 1.4, 1.0]), img, (0.5, 0.5, 0.5))
    mean = np.round(grey).mean()
    expected = np.clip(1.4 * img + (1 - 1.4) * mean, 0, 255)
    assert np.abs(contrast.astype(float) - expected).max() <= 1.0

    bright = FaceAugmenter.photometric(_FixedDraws([1.5, 1.0, 1.0]), img, (0.5, 0.5, 0.5))
    assert np.abs(bright.astype(float) - np.clip(1.5 * img, 0, 255)).max() <= 0.5


def test_photometric_order_is_drawn():
    img = np.array([[[250, 10, 10], [10, 250, 10]]], np.uint8)
    draws = [1.5, 1.0, 0.5]
    bright_first = FaceAugmenter.photometric(_FixedDraws(list(draws), (0, 2, 1)), img,
                                             (0.5, 0.5, 0.5))
    sat_first = FaceAugmenter.photometric(_FixedDraws(list(draws), (2, 0, 1)), img,
                                          (0.5, 0.5, 0.5))
    # Brightness saturates at 255 before or after the grey blend: the order changes the result.
    assert not np.array_equal(bright_first, sat_first)


def test_each_step_runs_at_its_probability(noise_face):
    np.random.seed(0)
    aug = _only(flip_prob=0.5)
    flipped = sum(
        np.array_equal(aug(dict(img=noise_face))['img'], noise_face[:, ::-1]) for _ in range(400))
    assert 160 <= flipped <= 240


def test_seeded_runs_reproduce(noise_face):
    aug = FaceAugmenter(crop_prob=0.5, lowres_prob=0.5, photometric_prob=0.5)

    def run():
        np.random.seed(4)
        return [aug(dict(img=noise_face))['img'] for _ in range(10)]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)
    per_sample = FaceAugmenter(crop_prob=0.5, lowres_prob=0.5, photometric_prob=0.5, seed=3)
    first = per_sample(dict(img=noise_face, sample_idx=8))['img']
    np.random.seed(1)
    np.testing.assert_array_equal(per_sample(dict(img=noise_face, sample_idx=8))['img'], first)


def test_other_sizes_and_registry(noise_face):
    aug = TRANSFORMS.build(
        dict(type='FaceAugmenter', _scope_='mmoaml', crop_prob=1, lowres_prob=1,
             photometric_prob=1, flip_prob=1))
    img = np.zeros((64, 48, 3), np.uint8) + 100
    out = aug(dict(img=img))
    assert out['img'].shape == (64, 48, 3) and out['visibility_mask'].shape == (64, 48)
    with pytest.raises(ValueError, match='crop_prob'):
        FaceAugmenter(crop_prob=2)
    with pytest.raises(ValueError, match='lowres_ratio'):
        FaceAugmenter(lowres_ratio=(0.0, 1.0))
    assert math.isclose(aug.flip_prob, 1.0) and 'FaceAugmenter(' in repr(aug)
