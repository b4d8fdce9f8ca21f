"""Shared conventions: reading a batch's ground truth, area-averaged visibility, the template."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmoaml.structures import (ARCFACE_TEMPLATE_112, area_downsample, stack_gt_visibility,
                               stack_labels, template_points)


def _samples(labels=(), masks=()):
    samples = []
    for i in range(max(len(labels), len(masks))):
        sample = DataSample()
        if i < len(labels):
            sample.set_gt_label(labels[i])
        if i < len(masks):
            sample.set_field(masks[i], 'gt_visibility')
        samples.append(sample)
    return samples


def test_stack_labels_reads_one_label_per_image_and_names_what_is_missing():
    labels = stack_labels(_samples(labels=[3, 1, 4]), 3)
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1, 4]
    samples = _samples(labels=[3, 1, 4])
    del samples[2].gt_label
    with pytest.raises(ValueError, match=r'occ\[2\] has no gt_label'):
        stack_labels(samples, 3, name='occ')
    with pytest.raises(ValueError, match='per image \\(4\\), got 3'):
        stack_labels(_samples(labels=[3, 1, 4]), 4)


def test_stack_gt_visibility_stacks_the_masks():
    masks = [torch.full((1, 4, 4), float(i)) for i in range(2)]
    stacked = stack_gt_visibility(_samples(masks=masks), 2)
    assert tuple(stacked.shape) == (2, 1, 4, 4) and stacked[1].eq(1).all()
    with pytest.raises(ValueError, match=r'data_samples\[0\] has no gt_visibility'):
        stack_gt_visibility(_samples(labels=[0]), 1)


def test_area_downsample_is_the_visible_fraction_of_each_cell():
    mask = np.zeros((4, 4), dtype=np.float32)
    mask[0, 0] = 1  # one of the four pixels of the top-left 2x2 cell
    mask[2:, 2:] = 1  # the whole bottom-right cell
    grid = area_downsample(mask, (2, 2))
    assert tuple(grid.shape) == (1, 1, 2, 2)
    np.testing.assert_allclose(grid[0, 0].numpy(), [[0.25, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match='mask must be'):
        area_downsample(np.zeros((2, 3, 4, 4)), (2, 2))


def test_template_points_scale_the_arcface_template():
    np.testing.assert_allclose(template_points((112, 112)), ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(template_points((224, 224)), ARCFACE_TEMPLATE_112 * 2)
