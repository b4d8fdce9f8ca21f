"""SunglassesOcclusion: lenses over the template's eyes, nothing near the mouth."""
import numpy as np
import pytest

from mmoaml.datasets.transforms import SunglassesOcclusion
from mmoaml.structures import template_points


@pytest.mark.parametrize('size', [(112, 112), (224, 224)])
def test_covers_eye_points_but_not_the_mouth(size, pixel_distance):
    pts = template_points(size)
    s = size[0] / 112
    mouth_distance = pixel_distance(pts[3:], size)
    eye_distance = pixel_distance(pts[:2], size)
    occluder = SunglassesOcclusion(styles='all', seed=0)
    for idx in range(150):
        out = occluder(dict(img=np.zeros(size + (3, ), np.uint8), visibility_mask=np.ones(size),
                            sample_idx=idx))
        covered = out['visibility_mask'] == 0
        assert covered[eye_distance <= 1.0 * s].all(), out['occluder']
        assert mouth_distance[covered].min() > 10 * s, out['occluder']


def test_lenses_are_opaque_tints_over_the_eyes():
    img = np.full((112, 112, 3), 200, np.uint8)
    out = SunglassesOcclusion(styles=['round_black'], colour_jitter=0, seed=0)(
        dict(img=img, sample_idx=0))
    x, y = template_points()[0].astype(int)
    assert (out['img'][y, x] == 26).all()
