"""ArcFace / CosFace heads and the shared cosine-margin base (kernel, init, input checks)."""
import math

import numpy as np
import pytest
import torch

from mmoaml.models.heads import AdaFaceHead, ArcFaceHead, CosFaceHead
from mmoaml.registry import MODELS

KERNEL = np.array([[0.5, -1.0, 0.2], [1.0, 0.3, -0.4], [-0.2, 0.8, 0.9], [0.4, 0.1, -0.7]])
EMB = np.array([[0.3, 0.9, -0.1, 0.2], [-0.5, 0.1, 0.8, 0.3], [0.7, -0.2, 0.1, -0.6],
                [0.5, 1.0, -0.2, 0.4]])
LABELS = np.array([0, 1, 2, 0])


def _cosines(eps):
    w = KERNEL / np.linalg.norm(KERNEL, axis=0, keepdims=True)
    e = EMB / np.linalg.norm(EMB, axis=1, keepdims=True)
    return np.clip(e @ w, -1 + eps, 1 - eps)


def _run(head):
    head.kernel.data = torch.tensor(KERNEL, dtype=torch.float32)
    emb = torch.tensor(EMB, dtype=torch.float32)
    return head(emb, None, torch.tensor(LABELS)).detach().numpy()


def test_arcface_matches_formula():
    m, s, eps = 0.5, 64.0, 1e-4
    cos = _cosines(eps)
    expected = s * cos
    for i, y in enumerate(LABELS):
        theta = min(max(math.acos(cos[i, y]) + m, eps), math.pi - eps)
        expected[i, y] = s * math.cos(theta)
    np.testing.assert_allclose(_run(ArcFaceHead(4, 3)), expected, rtol=0, atol=1e-4)


def test_arcface_clip_replaces_easy_margin():
    # An embedding nearly opposite to its class centre: the target angle is clipped at pi - eps
    # rather than wrapping around (cos would increase again past pi).
    head = ArcFaceHead(2, 1, m=0.5)
    head.kernel.data = torch.tensor([[1.0], [0.0]])
    logits = head(torch.tensor([[-1.0, 0.05]]), None, torch.tensor([0]))
    assert logits.item() == pytest.approx(64 * math.cos(math.pi - 1e-4), abs=1e-4)


def test_cosface_matches_formula():
    m, s, eps = 0.4, 64.0, 1e-4
    cos = _cosines(eps)
    expected = s * cos
    for i, y in enumerate(LABELS):
        expected[i, y] = s * (cos[i, y] - m)
    np.testing.assert_allclose(_run(CosFaceHead(4, 3)), expected, rtol=0, atol=1e-4)


def test_norm_is_accepted_and_unused():
    head = CosFaceHead(4, 3)
    emb = torch.tensor(EMB, dtype=torch.float32)
    labels = torch.tensor(LABELS)
    assert torch.equal(head(emb, None, labels), head(emb, torch.rand(4, 1) * 50, labels))


@pytest.mark.parametrize('cls', [AdaFaceHead, ArcFaceHead, CosFaceHead])
def test_kernel_layout_and_initialisation(cls):
    torch.manual_seed(0)
    head = cls(embed_dim=16, num_classes=50)
    assert [name for name, _ in head.named_parameters()] == ['kernel']
    assert head.kernel.shape == (16, 50)
    np.testing.assert_allclose(head.kernel.norm(dim=0).detach().numpy(), 1.0, atol=1e-6)
    # uniform(-1, 1) before the column scaling: every sign pattern occurs, no zero column.
    assert (head.kernel > 0).any() and (head.kernel < 0).any()
    assert len({tuple(c) for c in head.kernel.detach().t().tolist()}) == 50


@pytest.mark.parametrize('cls', [AdaFaceHead, ArcFaceHead, CosFaceHead])
def test_gradients_reach_embedding_and_kernel(cls):
    head = cls(embed_dim=4, num_classes=3).train()
    emb = torch.tensor(EMB, dtype=torch.float32, requires_grad=True)
    torch.nn.functional.cross_entropy(
        head(emb, torch.full((4, 1), 20.0), torch.tensor(LABELS)), torch.tensor(LABELS)).backward()
    assert emb.grad.abs().sum() > 0 and head.kernel.grad.abs().sum() > 0


@pytest.mark.parametrize('cls', [AdaFaceHead, ArcFaceHead, CosFaceHead])
def test_bad_inputs_raise_naming_the_argument(cls):
    head = cls(embed_dim=4, num_classes=3)
    norm = torch.ones(2, 1)
    with pytest.raises(ValueError, match='embedding'):
        head(torch.randn(2, 5), norm, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='labels'):
        head(torch.randn(2, 4), norm, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match='labels'):
        head(torch.randn(2, 4), norm, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match='labels'):
        head(torch.randn(2, 4), norm, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='norm'):
        head(torch.randn(2, 4), torch.ones(2), torch.tensor([0, 1]))


def test_registered():
    for cls in (ArcFaceHead, CosFaceHead):
        cfg = dict(type=cls.__name__, _scope_='mmoaml', embed_dim=4, num_classes=2)
        assert isinstance(MODELS.build(cfg), cls)
