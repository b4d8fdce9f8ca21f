"""RandomOcclusion: patch size, position and shape follow the arguments and the record."""
import numpy as np
import pytest

from mmoaml.datasets.transforms import RandomOcclusion


def _run(occluder, idx, size=(112, 112)):
    out = occluder(dict(img=np.zeros(size + (3, ), np.uint8), visibility_mask=np.ones(size),
                        sample_idx=idx))
    return out['visibility_mask'] == 0, out['occluder']['params']


def test_patch_area_and_position_follow_the_record():
    occluder = RandomOcclusion(side_range=(0.3, 0.3), aspect_ratio=(1.0, 1.0),
                               shapes=('rectangle', ), seed=0)
    side = 0.3 * 112
    for idx in range(60):
        covered, params = _run(occluder, idx)
        assert params['shape'] == 'rectangle'
        assert abs(params['width'] - side) < 1e-6 and abs(params['height'] - side) < 1e-6
        cx, cy = params['centre']
        ys, xs = np.nonzero(covered)
        # Every covered pixel lies within the rotated square's circumradius of the centre.
        assert (np.hypot(xs - cx, ys - cy) <= side / np.sqrt(2) + 1.5).all()
        if 3 <= cx <= 109 and 3 <= cy <= 109:
            assert covered[int(cy), int(cx)]
        inside = side * side
        assert covered.sum() <= inside + 4 * side  # rasterisation adds at most a 1 px rim


def test_size_range_bounds_the_covered_area():
    occluder = RandomOcclusion(side_range=(0.2, 0.5), shapes=('ellipse', ), seed=1)
    for idx in range(60):
        covered, params = _run(occluder, idx)
        assert 0.2 * 112 - 1e-6 <= np.sqrt(params['width'] * params['height']) <= 0.5 * 112 + 1e-6
        assert 0.5 - 1e-6 <= params['width'] / params['height'] <= 2.0 + 1e-6
        ellipse = np.pi / 4 * params['width'] * params['height']
        assert covered.sum() <= ellipse + 2 * (params['width'] + params['height'])


def test_only_requested_shapes_are_drawn():
    occluder = RandomOcclusion(shapes=('triangle', 'polygon'), seed=2)
    drawn = {_run(occluder, idx)[1]['shape'] for idx in range(40)}
    assert drawn == {'triangle', 'polygon'}


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match='shapes'):
        RandomOcclusion(shapes=('hexagon', ))
    with pytest.raises(ValueError, match='side_range'):
        RandomOcclusion(side_range=(0.5, 0.2))
    with pytest.raises(ValueError, match='aspect_ratio'):
        RandomOcclusion(aspect_ratio=(0.0, 2.0))
