"""MedicalMaskOcclusion: placement on the 112x112 template, the report's jitter, coverage."""
import numpy as np
import pytest

from mmoaml.datasets.transforms import MedicalMaskOcclusion
from mmoaml.structures import template_points


def _covered(occluder, idx, size=(112, 112)):
    out = occluder(dict(img=np.zeros(size + (3, ), np.uint8), visibility_mask=np.ones(size),
                        sample_idx=idx))
    return out['visibility_mask'] == 0, out['occluder']


def test_report_defaults():
    mask = MedicalMaskOcclusion()
    assert mask.prob == 0.5
    assert (mask.point_jitter, mask.shift, mask.scale, mask.rotation) == (3.0, 5.0, (0.95, 1.10),
                                                                          7.0)


@pytest.mark.parametrize('size', [(112, 112), (224, 224)])
def test_covers_nose_to_chin_and_never_the_eyes(size, pixel_distance):
    pts = template_points(size)
    s = size[0] / 112
    eye_distance = pixel_distance(pts[:2], size)
    # Box: from 4 px below the nose tip to 8 px below the mouth line, between the mouth corners.
    y0, y1 = int(pts[2, 1] + 4 * s), int(pts[3:, 1].mean() + 8 * s)
    x0, x1 = int(np.ceil(pts[3, 0])), int(pts[4, 0]) + 1
    occluder = MedicalMaskOcclusion(prob=1.0, styles='all', seed=0)
    for idx in range(150):
        covered, record = _covered(occluder, idx, size)
        assert covered[y0:y1, x0:x1].mean() > 0.9, record
        assert eye_distance[covered].min() > 3 * s, record


def test_unjittered_mask_spans_nose_bridge_to_chin():
    occluder = MedicalMaskOcclusion(
        prob=1.0, styles='all', point_jitter=0, shift=0, scale=(1, 1), rotation=0, seed=0)
    nose_x = int(template_points()[2, 0])
    for idx in range(30):
        covered, record = _covered(occluder, idx)
        rows = np.nonzero(covered[:, nose_x])[0]
        # Top edge on the nose bridge (y = 62, halfway between eye line 51.6 and nose tip 71.7),
        # bottom at the crop's lower border (under the chin).
        assert 61 <= rows.min() <= 63 and rows.max() == 111, record
        assert covered[rows.min():, nose_x].all(), record
        # Ear loops reach the crop's sides; the body spans the face between the cheeks.
        cols = np.nonzero(covered.any(0))[0]
        assert cols.min() <= 4 and cols.max() >= 107, record
        assert covered[92, 24:89].all(), record


def test_placed_on_arcface_not_sphereface_template():
    # Centred on the 112x112 template's nose (x = 56.0); the 96x112 template's would be 8 px left.
    occluder = MedicalMaskOcclusion(
        prob=1.0, styles=['surgical_blue'], point_jitter=0, shift=0, scale=(1, 1), rotation=0)
    covered, _ = _covered(occluder, 0)
    cols = np.nonzero(covered[100])[0]
    assert abs((cols.min() + cols.max() + 1) / 2 - 56.1) <= 1.0


def test_jitter_is_recorded_within_report_ranges():
    occluder = MedicalMaskOcclusion(prob=1.0, seed=1)
    for idx in range(50):
        params = _covered(occluder, idx)[1]['params']
        assert np.abs(params['anchor_offsets']).max() <= 3.0
        assert np.abs(params['shift']).max() <= 5.0
        assert 0.95 <= params['scale'] <= 1.10
        assert abs(params['rotation_deg']) <= 7.0
