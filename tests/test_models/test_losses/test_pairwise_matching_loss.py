"""PairwiseMatchingLoss: row-summed BCE over all pairs (diagonal included), batch-hard accuracy."""
import math

import pytest
import torch

from mmoaml.models.losses import PairwiseMatchingLoss
from mmoaml.registry import MODELS

# P = 2 identities x K = 2 instances, hand-built scores (row = anchor).
SCORES = [
    [3.0, 1.5, -0.5, 0.2],
    [1.0, 2.5, 0.8, -1.0],
    [-0.3, 1.2, 2.0, 0.4],
    [0.1, -0.2, 0.6, 1.8],
]
LABELS = [7, 7, 3, 3]


def _bce(x, target):
    return math.log1p(math.exp(-x)) if target else math.log1p(math.exp(x))


def test_loss_matches_definition():
    expected = sum(
        sum(_bce(SCORES[i][j], LABELS[i] == LABELS[j]) for j in range(4)) for i in range(4)) / 4
    loss = PairwiseMatchingLoss()(torch.tensor(SCORES), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_diagonal_is_included_with_target_one():
    scores = torch.tensor(SCORES)
    lowered = scores.clone()
    lowered[0, 0] -= 2.0
    delta = PairwiseMatchingLoss()(lowered, torch.tensor(LABELS)) - PairwiseMatchingLoss()(
        scores, torch.tensor(LABELS))
    assert delta.item() == pytest.approx((_bce(1.0, True) - _bce(3.0, True)) / 4, rel=1e-5)


def test_gradient_reaches_every_pair():
    scores = torch.tensor(SCORES, requires_grad=True)
    PairwiseMatchingLoss()(scores, torch.tensor(LABELS)).backward()
    # d/dx of BCE = sigmoid(x) - target, divided by the number of anchors.
    for i in range(4):
        for j in range(4):
            target = float(LABELS[i] == LABELS[j])
            expected = (1 / (1 + math.exp(-SCORES[i][j])) - target) / 4
            assert scores.grad[i, j].item() == pytest.approx(expected, abs=1e-6)


def test_accuracy_hardest_positive_beats_hardest_negative():
    # Anchor 0: pos 1.5 vs neg max(-0.5, 0.2) = 0.2 -> right; anchor 1: 1.0 vs 0.8 -> right;
    # anchor 2: 0.4 vs 1.2 -> wrong; anchor 3: 0.6 vs 0.1 -> right.
    acc = PairwiseMatchingLoss().accuracy(torch.tensor(SCORES), torch.tensor(LABELS))
    assert acc.item() == pytest.approx(0.75)


def test_accuracy_is_strict_and_skips_anchors_without_positive():
    scores = torch.tensor([[9.0, 1.0, 1.0], [1.0, 9.0, 0.0], [5.0, 5.0, 9.0]])
    # Anchor 0: pos 1.0 vs neg 1.0 -> tie is wrong; anchor 1: 1.0 vs 0.0 -> right;
    # anchor 2 has no positive and is left out. The self score (9.0) is never the positive.
    acc = PairwiseMatchingLoss().accuracy(scores, torch.tensor([0, 0, 1]))
    assert acc.item() == pytest.approx(0.5)
    assert torch.isnan(PairwiseMatchingLoss().accuracy(scores, torch.tensor([0, 1, 2])))


def test_bad_inputs_raise():
    loss = PairwiseMatchingLoss()
    with pytest.raises(ValueError, match='square'):
        loss(torch.zeros(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match='labels'):
        loss(torch.zeros(3, 3), torch.tensor([0, 1]))


def test_registered():
    cfg = dict(type='PairwiseMatchingLoss', _scope_='mmoaml')
    assert isinstance(MODELS.build(cfg), PairwiseMatchingLoss)
