"""NiqabOcclusion: only an eye band on the template's eye line stays visible."""
import numpy as np
import pytest

from mmoaml.datasets.transforms import NiqabOcclusion
from mmoaml.structures import face_region_prior, template_points


@pytest.mark.parametrize('size', [(112, 112), (160, 128)])
def test_only_the_eye_band_is_visible(size):
    prior = face_region_prior(size)
    eyes = template_points(size)[:2]
    ys, xs = np.mgrid[0:size[0], 0:size[1]]  # pixel (x, y) at integer (x, y), as cv2 draws
    occluder = NiqabOcclusion(styles='all', seed=0)
    for idx in range(100):
        out = occluder(dict(img=np.zeros(size + (3, ), np.uint8), sample_idx=idx))
        vis, record = out['visibility_mask'], out['occluder']
        x0, y0, x1, y1 = record['params']['slit']
        cx0, cy0, cx1, cy1 = record['params']['core']
        outside = (xs < x0 - 1) | (xs > x1 + 1) | (ys < y0 - 1) | (ys > y1 + 1)
        core = (xs > cx0 + 1) & (xs < cx1 - 1) & (ys > cy0 + 1) & (ys < cy1 - 1)
        assert (vis[outside] == 0).all(), record
        np.testing.assert_array_equal(vis[core], prior[core])
        # The visible slit holds both eye points.
        assert (cx0 < eyes[:, 0]).all() and (eyes[:, 0] < cx1).all(), record
        assert (cy0 < eyes[:, 1]).all() and (eyes[:, 1] < cy1).all(), record
        assert vis.sum() < 0.3 * prior.sum()


def test_band_height_follows_arguments():
    iod = float(np.diff(template_points()[:2, 0])[0])
    occluder = NiqabOcclusion(band_height=(0.5, 0.5), band_shift=0.0, slit_extent=(0.6, 0.6))
    np.random.seed(0)
    record = occluder(dict(img=np.zeros((112, 112, 3), np.uint8)))['occluder']
    x0, y0, x1, y1 = record['params']['slit']
    assert abs((y1 - y0) - 0.5 * iod) < 1e-2
    eyes = template_points()[:2]
    assert abs((y0 + y1) / 2 - (eyes[:, 1].mean() - 0.04 * iod)) < 1e-2
    assert abs(x0 - (eyes[0, 0] - 0.6 * iod)) < 1e-2 and abs(x1 - (eyes[1, 0] + 0.6 * iod)) < 1e-2


def test_bad_ranges_are_rejected():
    with pytest.raises(ValueError, match='band_height'):
        NiqabOcclusion(band_height=(0.6, 0.4))
    with pytest.raises(ValueError, match='slit_extent'):
        NiqabOcclusion(slit_extent=(0.0, 0.5))
