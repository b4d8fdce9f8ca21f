"""OcclusionLoss: MSE against the area-averaged ground-truth mask."""
import numpy as np
import pytest
import torch

from mmoaml.models.losses import OcclusionLoss
from mmoaml.registry import MODELS


def test_loss_matches_block_averaged_mse():
    rng = np.random.default_rng(0)
    gt = (rng.random((2, 1, 28, 28)) > 0.4).astype(np.float32)
    gt[0, 0, 14:] = 0  # lower half occluded
    pred = rng.random((2, 1, 7, 7)).astype(np.float32)
    target = np.zeros((2, 1, 7, 7))
    for b in range(2):
        for y in range(7):
            for x in range(7):
                target[b, 0, y, x] = gt[b, 0, 4 * y:4 * y + 4, 4 * x:4 * x + 4].mean()
    expected = ((pred - target)**2).mean()
    loss = OcclusionLoss()(torch.from_numpy(pred), torch.from_numpy(gt))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # [B, H, W] masks are accepted too.
    assert OcclusionLoss()(torch.from_numpy(pred), torch.from_numpy(gt[:, 0])).item() == \
        pytest.approx(expected, rel=1e-6)


def test_gradient_reaches_prediction():
    pred = torch.full((1, 1, 7, 7), 0.5, requires_grad=True)
    OcclusionLoss()(pred, torch.ones(1, 1, 112, 112)).backward()
    torch.testing.assert_close(pred.grad, torch.full_like(pred, 2 * (0.5 - 1.0) / 49))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='pred'):
        OcclusionLoss()(torch.rand(2, 2, 7, 7), torch.ones(2, 1, 112, 112))
    with pytest.raises(ValueError, match='gt'):
        OcclusionLoss()(torch.rand(2, 1, 7, 7), torch.ones(3, 1, 112, 112))


def test_registered():
    assert isinstance(MODELS.build(dict(type='OcclusionLoss', _scope_='mmoaml')), OcclusionLoss)
