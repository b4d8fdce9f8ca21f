"""AdaFaceHead: reference formulas over two training steps, EMA rules, batch-of-one guard."""
import math

import numpy as np
import pytest
import torch

from mmoaml.models.heads import AdaFaceHead
from mmoaml.registry import MODELS

KERNEL = np.array([[0.5, -1.0, 0.2], [1.0, 0.3, -0.4], [-0.2, 0.8, 0.9], [0.4, 0.1, -0.7]])
EMB = [
    np.array([[0.3, 0.9, -0.1, 0.2], [-0.5, 0.1, 0.8, 0.3], [0.7, -0.2, 0.1, -0.6]]),
    np.array([[0.1, 0.2, 0.9, -0.3], [0.6, 0.6, -0.2, 0.1], [-0.3, -0.1, 0.4, 0.9]]),
]
NORMS = [np.array([5.0, 35.0, 150.0]), np.array([0.0001, 22.0, 60.0])]
LABELS = [np.array([0, 1, 2]), np.array([2, 0, 0])]


def _expected_step(emb, norms, labels, mu, sigma, m, h, s, t_alpha, eps):
    """One AdaFace training step from the formulas (docs/reference.md#adaface), in float64."""
    w = KERNEL / np.sqrt((KERNEL**2).sum(axis=0, keepdims=True))
    e = emb / np.sqrt((emb**2).sum(axis=1, keepdims=True))
    cos = np.clip(e @ w, -1 + eps, 1 - eps)
    n = np.clip(norms, 0.001, 100.0)
    mu = t_alpha * n.mean() + (1 - t_alpha) * mu
    sigma = t_alpha * n.std(ddof=1) + (1 - t_alpha) * sigma
    logits = s * cos
    for i, y in enumerate(labels):
        z = min(max(h * (n[i] - mu) / (sigma + eps), -1.0), 1.0)
        theta = min(max(math.acos(cos[i, y]) - m * z, eps), math.pi - eps)
        logits[i, y] = s * (math.cos(theta) - (m + m * z))
    return logits, mu, sigma


@pytest.mark.parametrize('h', [0.333, 5.0])  # 5.0 drives z into both clips
def test_two_training_steps_match_the_formulas(h):
    m, s, t_alpha, eps = 0.4, 64.0, 0.3, 1e-3
    head = AdaFaceHead(embed_dim=4, num_classes=3, m=m, h=h, s=s, t_alpha=t_alpha).train()
    head.kernel.data = torch.tensor(KERNEL, dtype=torch.float32)
    mu, sigma = 20.0, 100.0
    for step in range(2):
        logits = head(
            torch.tensor(EMB[step], dtype=torch.float32),
            torch.tensor(NORMS[step], dtype=torch.float32)[:, None],
            torch.tensor(LABELS[step]))
        expected, mu, sigma = _expected_step(EMB[step], NORMS[step], LABELS[step], mu, sigma, m,
                                             h, s, t_alpha, eps)
        np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=0, atol=2e-4)
        np.testing.assert_allclose(head.batch_mean.item(), mu, rtol=1e-6)
        np.testing.assert_allclose(head.batch_std.item(), sigma, rtol=1e-6)


def test_z_actually_clips_with_large_h():
    # Guards the parametrised test above: with h = 5 some z hit -1 and +1 on the first step.
    n = np.clip(NORMS[0], 0.001, 100.0)
    mu = 0.3 * n.mean() + 0.7 * 20
    sigma = 0.3 * n.std(ddof=1) + 0.7 * 100
    z = 5.0 * (n - mu) / (sigma + 1e-3)
    assert z.min() < -1 and z.max() > 1


def test_defaults_and_buffers():
    head = AdaFaceHead(num_classes=7)
    assert (head.m, head.h, head.s, head.t_alpha, head.eps) == (0.4, 0.333, 64.0, 0.01, 1e-3)
    assert head.kernel.shape == (512, 7)
    assert head.batch_mean.item() == 20.0 and head.batch_std.item() == 100.0
    assert set(dict(head.named_buffers())) == {'batch_mean', 'batch_std'}


def test_eval_mode_reads_but_does_not_update_the_ema():
    head = AdaFaceHead(embed_dim=4, num_classes=3).eval()
    head.batch_mean.fill_(30.0)
    head.batch_std.fill_(10.0)
    emb = torch.tensor(EMB[0], dtype=torch.float32)
    norms = torch.tensor(NORMS[0], dtype=torch.float32)[:, None]
    head.kernel.data = torch.tensor(KERNEL, dtype=torch.float32)
    logits = head(emb, norms, torch.tensor(LABELS[0]))
    assert head.batch_mean.item() == 30.0 and head.batch_std.item() == 10.0
    # The margin uses the stored statistics: z_0 = clip(0.333 * (5 - 30) / (10 + 1e-3), -1, 1).
    w = KERNEL / np.linalg.norm(KERNEL, axis=0)
    e = EMB[0][0] / np.linalg.norm(EMB[0][0])
    z = max(-1.0, 0.333 * (5 - 30) / 10.001)
    cos = np.clip(e @ w[:, 0], -1 + 1e-3, 1 - 1e-3)
    target = 64 * (math.cos(math.acos(cos) - 0.4 * z) - (0.4 + 0.4 * z))
    assert logits[0, 0].item() == pytest.approx(target, abs=2e-4)


def test_batch_of_one_keeps_std_finite():
    """Deviation from the reference: its unbiased std of one value makes batch_std NaN forever."""
    head = AdaFaceHead(embed_dim=4, num_classes=3, t_alpha=0.5).train()
    emb = torch.tensor(EMB[0][:1], dtype=torch.float32)
    logits = head(emb, torch.tensor([[30.0]]), torch.tensor([1]))
    assert head.batch_std.item() == 100.0
    assert head.batch_mean.item() == pytest.approx(0.5 * 30 + 0.5 * 20)
    assert torch.isfinite(logits).all()
    later = head(
        torch.tensor(EMB[1], dtype=torch.float32),
        torch.tensor(NORMS[1], dtype=torch.float32)[:, None], torch.tensor(LABELS[1]))
    assert torch.isfinite(later).all() and torch.isfinite(head.batch_std).all()


def test_norm_receives_no_gradient_but_embedding_and_kernel_do():
    head = AdaFaceHead(embed_dim=4, num_classes=3).train()
    emb = torch.tensor(EMB[0], dtype=torch.float32, requires_grad=True)
    norms = torch.tensor(NORMS[0], dtype=torch.float32)[:, None].requires_grad_()
    head(emb, norms, torch.tensor(LABELS[0])).sum().backward()
    assert norms.grad is None
    assert emb.grad.abs().sum() > 0 and head.kernel.grad.abs().sum() > 0


def test_missing_norm_is_an_error():
    head = AdaFaceHead(embed_dim=4, num_classes=3)
    with pytest.raises(ValueError, match='norm'):
        head(torch.randn(2, 4), None, torch.tensor([0, 1]))


def test_registered():
    head = MODELS.build(dict(type='AdaFaceHead', _scope_='mmoaml', embed_dim=8, num_classes=4))
    assert isinstance(head, AdaFaceHead)


def _ema_head():
    head = AdaFaceHead(embed_dim=4, num_classes=3, t_alpha=0.5).train()
    head.kernel.data = torch.tensor(KERNEL, dtype=torch.float32)
    return head


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_norms_are_left_out_of_the_ema(bad):
    """Deviation from the reference: a NaN norm made its EMA NaN for good; +-inf was clipped."""
    head = _ema_head()
    norms = torch.tensor([[10.0], [bad], [30.0], [50.0]])
    logits = head(torch.tensor(EMB[0][[0, 1, 2, 0]], dtype=torch.float32), norms,
                  torch.tensor([0, 1, 2, 0]))
    finite = np.array([10.0, 30.0, 50.0])  # the EMA of the finite norms only
    assert head.batch_mean.item() == pytest.approx(0.5 * finite.mean() + 0.5 * 20.0, rel=1e-6)
    assert head.batch_std.item() == pytest.approx(0.5 * finite.std(ddof=1) + 0.5 * 100.0, rel=1e-6)
    # the other samples' logits stay finite; the bad sample's margin follows the reference
    # (an infinite norm counts as 100, a NaN norm gives NaN and so a non-finite loss)
    assert torch.isfinite(logits[[0, 2, 3]]).all()
    assert torch.isfinite(logits[1]).all() == (bad == bad)


def test_one_finite_norm_updates_the_mean_only_and_none_updates_nothing():
    head = _ema_head()
    head(torch.tensor(EMB[0][:2], dtype=torch.float32), torch.tensor([[float('nan')], [30.0]]),
         torch.tensor([0, 1]))
    assert head.batch_mean.item() == pytest.approx(25.0) and head.batch_std.item() == 100.0
    head(torch.tensor(EMB[0][:2], dtype=torch.float32), torch.full((2, 1), float('nan')),
         torch.tensor([0, 1]))
    assert head.batch_mean.item() == pytest.approx(25.0) and head.batch_std.item() == 100.0


def test_empty_batch_leaves_the_ema_unchanged():
    head = _ema_head()
    logits = head(torch.empty(0, 4), torch.empty(0, 1), torch.empty(0, dtype=torch.long))
    assert logits.shape == (0, 3)
    assert head.batch_mean.item() == 20.0 and head.batch_std.item() == 100.0
