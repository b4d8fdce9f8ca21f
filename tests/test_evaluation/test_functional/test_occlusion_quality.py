"""Occlusion-head quality: known answers worked out by hand from the definitions."""
import numpy as np
import pytest
import torch

from mmoaml.evaluation.functional import (mean_visibility, visibility_iou, visibility_mse,
                                          visibility_summary)


def _maps(*rows):
    """[N, 1, 1, k] maps from lists of cell values."""
    return np.array(rows, dtype=np.float64)[:, None, None, :]


def test_mse_hand_computed():
    pred = _maps([1.0, 0.5], [0.0, 0.25])
    gt = _maps([1.0, 0.0], [0.5, 0.25])
    # squared errors 0, 0.25, 0.25, 0 over 4 cells
    assert visibility_mse(pred, gt) == pytest.approx(0.125)
    assert visibility_mse(torch.tensor(pred), torch.tensor(gt)) == pytest.approx(0.125)
    assert visibility_mse(gt, gt) == 0.0


def test_summary_hand_computed():
    pred = _maps([1.0, 0.5], [0.0, 0.25])
    gt = _maps([1.0, 0.0], [0.5, 0.25])
    # means 1.75 / 4 and 1.75 / 4; squared errors 0, 0.25, 0.25, 0; hidden (< 0.5) cells:
    # pred {2, 3}, gt {1, 3} -> IoU 1 / 3
    assert visibility_summary(pred, gt) == pytest.approx(
        dict(mean_pred=0.4375, mean_gt=0.4375, mse=0.125, iou_hidden=1 / 3))


def test_iou_hidden_and_visible_hand_computed():
    # hidden (< 0.5): pred cells {0, 1, 4}, gt cells {1, 2, 4} -> inter {1, 4}, union {0,1,2,4}
    pred = _maps([0.1, 0.2, 0.9], [0.6, 0.0, 1.0])
    gt = _maps([0.7, 0.3, 0.4], [1.0, 0.49, 0.5])
    assert visibility_iou(pred, gt) == pytest.approx(2 / 4)
    # visible: pred {2, 3, 5}, gt {0, 3, 5} -> inter {3, 5}, union {0, 2, 3, 5}
    assert visibility_iou(pred, gt, region='visible') == pytest.approx(2 / 4)
    # threshold 0.45: gt cell 4 (0.49) becomes visible: gt hidden {1, 2} ; pred hidden {0,1,4}
    assert visibility_iou(pred, gt, threshold=0.45) == pytest.approx(1 / 4)


def test_iou_boundary_value_counts_as_visible():
    pred = _maps([0.5])
    gt = _maps([0.0])
    assert visibility_iou(pred, gt) == 0.0  # 0.5 >= threshold: predicted visible, truly hidden
    assert visibility_iou(_maps([0.4999]), gt) == 1.0


def test_iou_pooled_over_maps_not_averaged():
    # map 0: perfect on 1 hidden cell; map 1: 3 true hidden cells, 1 found.
    pred = _maps([0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0])
    gt = _maps([0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0])
    assert visibility_iou(pred, gt) == pytest.approx(2 / 4)  # a per-map mean would be 2/3


def test_iou_empty_region_is_perfect():
    ones = np.ones((2, 1, 7, 7))
    assert visibility_iou(ones, ones) == 1.0
    assert visibility_iou(np.zeros((2, 1, 7, 7)), ones) == 0.0


def test_mean_visibility():
    assert mean_visibility(_maps([1.0, 0.0, 0.5], [0.25, 0.25, 1.0])) == pytest.approx(3 / 6)


def test_bad_inputs_are_named():
    good = np.ones((2, 1, 7, 7))
    with pytest.raises(ValueError, match='pred must be'):
        visibility_mse(np.ones((2, 7, 7)), good)
    with pytest.raises(ValueError, match='same shape'):
        visibility_mse(good, np.ones((3, 1, 7, 7)))
    with pytest.raises(ValueError, match=r'gt must lie in \[0, 1\]'):
        visibility_iou(good, good * 2)
    with pytest.raises(ValueError, match='non-finite'):
        mean_visibility(good * np.nan)
    with pytest.raises(ValueError, match='region'):
        visibility_iou(good, good, region='occluded')
    with pytest.raises(ValueError, match='threshold'):
        visibility_iou(good, good, threshold=0.0)
