"""SoftmaxTripletLoss: batch-identity softmax on pooled QAConv scores + batch-hard triplet."""
import math

import pytest
import torch

from mmoaml.models.losses import SoftmaxTripletLoss
from mmoaml.registry import MODELS

# Identities 0 and 1 with two samples each, identity 2 with a single sample (anchor 4 has no
# positive and must be left out of both terms, though it still serves as a negative).
SCORES = [
    [4.0, 1.5, -0.5, 0.2, 0.9],
    [1.0, 4.0, 0.8, -1.0, 0.3],
    [-0.3, 1.2, 4.0, 0.4, 0.0],
    [0.1, -0.2, 0.6, 4.0, 1.1],
    [2.0, 2.0, 2.0, 2.0, 4.0],
]
LABELS = [0, 0, 1, 1, 2]


def _expected(margin=1.0):
    anchors = [0, 1, 2, 3]
    cls, triplet = 0.0, 0.0
    for i in anchors:
        logits = {}
        for k in (0, 1, 2):
            members = [j for j in range(5) if LABELS[j] == k and j != i]
            logits[k] = sum(SCORES[i][j] for j in members) / len(members)
        log_z = math.log(sum(math.exp(v) for v in logits.values()))
        cls += log_z - logits[LABELS[i]]
        pos = min(SCORES[i][j] for j in range(5) if LABELS[j] == LABELS[i] and j != i)
        neg = max(SCORES[i][j] for j in range(5) if LABELS[j] != LABELS[i])
        triplet += max(0.0, margin - (pos - neg))
    return cls / len(anchors), triplet / len(anchors)


def test_components_match_definition():
    parts = SoftmaxTripletLoss().components(torch.tensor(SCORES), torch.tensor(LABELS))
    cls, triplet = _expected()
    assert parts['loss_cls'].item() == pytest.approx(cls, rel=1e-6)
    assert parts['loss_triplet'].item() == pytest.approx(triplet, rel=1e-6)


def test_total_is_cls_plus_weighted_triplet():
    cls, triplet = _expected(margin=0.7)
    loss = SoftmaxTripletLoss(margin=0.7, triplet_weight=0.25)(
        torch.tensor(SCORES), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(cls + 0.25 * triplet, rel=1e-6)
    default = SoftmaxTripletLoss()
    assert (default.margin, default.triplet_weight) == (1.0, 0.5)


@pytest.mark.parametrize('term', ['loss_cls', 'loss_triplet'])
def test_every_term_reaches_the_scores(term):
    scores = torch.tensor(SCORES, requires_grad=True)
    SoftmaxTripletLoss().components(scores, torch.tensor(LABELS))[term].backward()
    grad = scores.grad
    assert grad[:4].abs().sum() > 0
    # The excluded anchor's row, and every self score, get no gradient.
    assert torch.all(grad[4] == 0) and torch.all(grad.diagonal() == 0)
    if term == 'loss_triplet':
        # Only the hardest positive and hardest negative of each anchor take part.
        assert (grad != 0).sum().item() <= 8


def test_total_gradient_contains_both_terms():
    scores = torch.tensor(SCORES, requires_grad=True)
    SoftmaxTripletLoss()(scores, torch.tensor(LABELS)).backward()
    parts_grad = []
    for term in ('loss_cls', 'loss_triplet'):
        s = torch.tensor(SCORES, requires_grad=True)
        SoftmaxTripletLoss().components(s, torch.tensor(LABELS))[term].backward()
        parts_grad.append(s.grad)
    torch.testing.assert_close(scores.grad, parts_grad[0] + 0.5 * parts_grad[1])


def test_no_valid_anchor_gives_connected_zero():
    scores = torch.randn(3, 3, requires_grad=True)
    loss = SoftmaxTripletLoss()(scores, torch.tensor([0, 1, 2]))  # no positives at all
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(scores.grad == 0)
    single_identity = SoftmaxTripletLoss()(scores, torch.tensor([5, 5, 5]))  # no negatives
    assert single_identity.item() == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='square'):
        SoftmaxTripletLoss()(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='labels'):
        SoftmaxTripletLoss()(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))


def test_registered():
    cfg = dict(type='SoftmaxTripletLoss', _scope_='mmoaml')
    assert isinstance(MODELS.build(cfg), SoftmaxTripletLoss)
