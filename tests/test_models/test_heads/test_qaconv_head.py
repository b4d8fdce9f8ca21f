"""QAConvHead: reference maths, visibility masking guarantees, chunking, precision, train BN."""
import math

import numpy as np
import pytest
import torch

from mmoaml.models.heads import QAConvHead
from mmoaml.registry import MODELS

C, H, W = 4, 2, 3
HW = H * W


def _maps(n, seed):
    return torch.randn(n, C, H, W, generator=torch.Generator().manual_seed(seed))


def _vis(n, seed, zero_fraction=0.3):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(n, HW, generator=g) * 0.9 + 0.1
    v[torch.rand(n, HW, generator=g) < zero_fraction] = 0
    return v


def _randomise(head, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (head.bn, head.logit_bn):
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.uniform_(-0.5, 0.5, generator=g)
            bn.running_mean.uniform_(-0.5, 0.5, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g)
        head.fc.weight.uniform_(0.0, 0.4, generator=g)
        head.fc.bias.uniform_(-0.3, 0.3, generator=g)
    return head


def _unit(maps):
    """[N, C, h, w] -> [N, hw, C] float64 unit local descriptors."""
    x = maps.detach().double().numpy().reshape(maps.shape[0], C, HW).transpose(0, 2, 1)
    return x / np.linalg.norm(x, axis=2, keepdims=True)


def _expected(head, probe, gallery, pv=None, gv=None, mode='mask', train=False):
    """Scores from the definition with plain loops (float64). See QAConvHead's docstring."""
    P, G = _unit(probe), _unit(gallery)
    p, g = len(P), len(G)
    pv = np.ones((p, HW)) if pv is None else pv.double().numpy()
    gv = np.ones((g, HW)) if gv is None else gv.double().numpy()
    values = np.zeros((p, g, 2, HW))
    weights = np.zeros((p, g, 2, HW))
    for i in range(p):
        for j in range(g):
            S = np.array([[P[i, r] @ G[j, s] for s in range(HW)] for r in range(HW)])
            if mode == 'multiply':
                for r in range(HW):
                    for s in range(HW):
                        S[r, s] *= pv[i, r] * gv[j, s]
                values[i, j, 0] = S.max(axis=1)
                values[i, j, 1] = S.max(axis=0)
                weights[i, j] = 1
                continue
            for own, other, corr, d in ((pv[i], gv[j], S, 0), (gv[j], pv[i], S.T, 1)):
                for r in range(HW):
                    candidates = [s for s in range(HW) if other[s] > 0]
                    if own[r] == 0 or not candidates:
                        continue
                    best = max(candidates, key=lambda s: corr[r, s])
                    values[i, j, d, r] = corr[r, best]
                    weights[i, j, d, r] = own[r] * other[best]
    bn, fc, lbn = head.bn, head.fc, head.logit_bn
    gamma, beta = bn.weight.item(), bn.bias.item()
    if train:
        mean = (weights * values).sum() / weights.sum()
        var = (weights * (values - mean)**2).sum() / weights.sum()
    else:
        mean, var = bn.running_mean.item(), bn.running_var.item()
    normed = (values - mean) / math.sqrt(var + bn.eps) * gamma + beta
    w, b = fc.weight.detach().double().numpy()[0], fc.bias.item()
    logits = np.zeros((p, g))
    for i in range(p):
        for j in range(g):
            for d in range(2):
                c = weights[i, j, d]
                scale = c / c.mean() if c.mean() > 0 else np.zeros(HW)
                logits[i, j] += sum(w[r] * normed[i, j, d, r] * scale[r] for r in range(HW)) + b
    if train:
        mean2, var2 = logits.mean(), logits.var()
    else:
        mean2, var2 = lbn.running_mean.item(), lbn.running_var.item()
    return (logits - mean2) / math.sqrt(var2 + lbn.eps) * lbn.weight.item() + lbn.bias.item()


def test_reference_parameters():
    head = QAConvHead()
    assert sum(p.numel() for p in head.parameters()) == 54
    assert torch.all(head.fc.weight == 1 / 49)
    bound = 1 / math.sqrt(49)
    assert -bound <= head.fc.bias.item() <= bound
    assert [n for n, _ in head.named_parameters()] == [
        'bn.weight', 'bn.bias', 'fc.weight', 'fc.bias', 'logit_bn.weight', 'logit_bn.bias'
    ]


def test_fresh_eval_score_closed_form():
    """Reference-facts 4.3: (mean_r max_s S + mean_s max_r S) / (1 + 1e-5) with zero fc bias."""
    head = QAConvHead(C, H, W).eval()
    head.fc.bias.data.zero_()
    probe, gallery = _maps(2, 1), _maps(3, 2)
    P, G = _unit(probe), _unit(gallery)
    expected = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            S = np.array([[P[i, r] @ G[j, s] for s in range(HW)] for r in range(HW)])
            expected[i, j] = (S.max(axis=1).mean() + S.max(axis=0).mean()) / (1 + 1e-5)
    np.testing.assert_allclose(head.match(probe, gallery).detach().numpy(), expected, atol=1e-6)
    same = head.match(probe[:1], probe[:1]).item()
    assert same == pytest.approx(2 / (1 + 1e-5), abs=1e-6)


@pytest.mark.parametrize('mode', ['mask', 'multiply'])
@pytest.mark.parametrize('with_vis', [False, True])
def test_eval_scores_match_definition(mode, with_vis):
    head = _randomise(QAConvHead(C, H, W, weighting=mode)).eval()
    probe, gallery = _maps(3, 3), _maps(4, 4)
    pv, gv = (_vis(3, 5), _vis(4, 6)) if with_vis else (None, None)
    scores = head.match(probe, gallery, pv, gv)
    expected = _expected(head, probe, gallery, pv, gv, mode)
    np.testing.assert_allclose(scores.detach().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize('with_vis', [False, True])
def test_train_scores_and_running_stats_match_definition(with_vis):
    head = _randomise(QAConvHead(C, H, W)).train()
    feats = _maps(5, 7)
    vis = _vis(5, 8) if with_vis else None
    expected = _expected(head, feats, feats, vis, vis, train=True)
    running_mean, running_var = head.bn.running_mean.item(), head.bn.running_var.item()
    scores = head(feats, vis)
    np.testing.assert_allclose(scores.detach().numpy(), expected, atol=1e-5)
    # bn running statistics: momentum 0.1, weighted mean, variance with the reliability-weight
    # correction V1^2 / (V1^2 - V2) (= n / (n - 1) for unit weights).
    match_vis = np.ones((5, HW)) if vis is None else vis.double().numpy()
    P = _unit(feats)
    values, weights = [], []
    for i in range(5):
        for j in range(5):
            S = np.array([[P[i, r] @ P[j, s] for s in range(HW)] for r in range(HW)])
            for own, other, corr in ((match_vis[i], match_vis[j], S),
                                     (match_vis[j], match_vis[i], S.T)):
                for r in range(HW):
                    cand = [s for s in range(HW) if other[s] > 0]
                    if own[r] > 0 and cand:
                        best = max(cand, key=lambda s: corr[r, s])
                        values.append(corr[r, best])
                        weights.append(own[r] * other[best])
    values, weights = np.array(values), np.array(weights)
    mean = (weights * values).sum() / weights.sum()
    var = (weights * (values - mean)**2).sum() / weights.sum()
    unbiased = var * weights.sum()**2 / (weights.sum()**2 - (weights**2).sum())
    assert head.bn.running_mean.item() == pytest.approx(0.9 * running_mean + 0.1 * mean, abs=1e-6)
    assert head.bn.running_var.item() == pytest.approx(
        0.9 * running_var + 0.1 * unbiased, abs=1e-6)
    assert head.bn.num_batches_tracked.item() == 1


def test_train_bn_equals_torch_batchnorm_without_visibility():
    """The head's own train-mode bn (needed for weights) reproduces nn.BatchNorm1d."""
    head = _randomise(QAConvHead(C, H, W)).train()
    reference = torch.nn.BatchNorm1d(1).train()
    reference.load_state_dict(head.bn.state_dict())
    values = torch.randn(3, 4, 2, HW)
    ours = head._normalise_maxima(values, None)
    theirs = reference(values.view(-1, 1, HW)).view_as(values)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(head.bn.running_mean, reference.running_mean)
    torch.testing.assert_close(head.bn.running_var, reference.running_var)


@pytest.mark.parametrize('train', [False, True])
def test_all_ones_visibility_is_exactly_no_visibility(train):
    head = _randomise(QAConvHead(C, H, W)).train(train)
    feats = _maps(4, 9)
    ones = torch.ones(4, 1, H, W)
    assert torch.equal(head(feats), head(feats, ones))
    if not train:
        probe, gallery = _maps(2, 10), _maps(3, 11)
        assert torch.equal(
            head.match(probe, gallery),
            head.match(probe, gallery, torch.ones(2, HW), torch.ones(3, HW)))
        assert torch.equal(
            head.match_pairs(probe, gallery[:2]),
            head.match_pairs(probe, gallery[:2], torch.ones(2, HW), torch.ones(2, HW)))


def test_all_ones_visibility_is_exact_at_full_size():
    head = _randomise(QAConvHead()).eval()
    probe, gallery = torch.randn(3, 512, 7, 7), torch.randn(70, 512, 7, 7)
    for dtype in (None, torch.bfloat16):
        assert torch.equal(
            head.match(probe, gallery, dtype=dtype),
            head.match(probe, gallery, torch.ones(3, 1, 7, 7), torch.ones(70, 49), dtype=dtype))


@pytest.mark.parametrize('with_vis', [False, True])
def test_swapping_probe_and_gallery_transposes(with_vis):
    head = _randomise(QAConvHead(C, H, W)).eval()
    probe, gallery = _maps(3, 12), _maps(4, 13)
    pv, gv = (_vis(3, 14), _vis(4, 15)) if with_vis else (None, None)
    torch.testing.assert_close(
        head.match(probe, gallery, pv, gv), head.match(gallery, probe, gv, pv).t(), atol=1e-6,
        rtol=0)


def test_probe_visibility_indexes_probe_locations():
    """Pins the predecessor's transposition bug: occluding probe location r must hide the probe's
    r, not the gallery's r."""
    head = QAConvHead(C, H, W).eval()
    probe, gallery = _maps(1, 16), _maps(1, 17)
    pv = torch.ones(1, HW)
    pv[0, :3] = 0
    scores = head.match(probe, gallery, pv, None)
    expected = _expected(head, probe, gallery, pv, None)
    np.testing.assert_allclose(scores.detach().numpy(), expected, atol=1e-6)
    transposed = _expected(head, probe, gallery, None, pv)
    assert abs(expected - transposed).max() > 1e-3


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('replacement', ['random', 'nan'])
def test_occluded_features_cannot_change_scores(train, replacement):
    head = _randomise(QAConvHead(C, H, W)).train(train)
    feats = _maps(5, 18)
    vis = _vis(5, 19, zero_fraction=0.4)
    vis[2] = 0  # one map with no visible location at all
    before = head(feats, vis)
    changed = feats.clone().view(5, C, HW)
    hidden = (vis == 0).unsqueeze(1).expand_as(changed)
    fill = torch.full_like(changed, float('nan')) if replacement == 'nan' else torch.randn_like(
        changed) * 100
    changed[hidden] = fill[hidden]
    changed.requires_grad_(train)
    after = head(changed.view(5, C, H, W), vis)
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    if train:  # the hidden descriptors are zeroed before the product, not only excluded after
        after.sum().backward()
        assert torch.isfinite(changed.grad[~hidden]).all()
    changed = changed.detach()
    changed = changed.view(5, C, H, W)
    if not train:
        torch.testing.assert_close(
            head.match(changed[:2], feats[2:], vis[:2], vis[2:]),
            head.match(feats[:2], feats[2:], vis[:2], vis[2:]),
            atol=1e-6,
            rtol=0)
    # The aligned-pair path excludes hidden locations after the product: same guarantee, and in
    # train mode the gradients of visible locations stay finite (as in forward, a non-finite
    # feature's own gradient is not).
    probe = changed[:4].clone().requires_grad_(train)
    pairs = head.match_pairs(probe, changed.flip(0)[:4], vis[:4], vis.flip(0)[:4])
    assert torch.isfinite(pairs).all()
    torch.testing.assert_close(
        pairs, head.match_pairs(feats[:4], feats.flip(0)[:4], vis[:4], vis.flip(0)[:4]),
        atol=1e-6, rtol=0)
    if train:
        pairs.sum().backward()
        visible = (vis[:4] > 0).view(4, 1, H, W).expand(-1, C, -1, -1)
        assert torch.isfinite(probe.grad[visible]).all()


def test_map_without_visible_location_scores_the_fc_bias():
    head = _randomise(QAConvHead(C, H, W)).eval()
    probe, gallery = _maps(2, 20), _maps(1, 21)
    score = head.match(probe, gallery, None, torch.zeros(1, HW))
    y = 2 * head.fc.bias.item()  # both directions contribute fc(0) = bias
    lbn = head.logit_bn
    expected = (y - lbn.running_mean.item()) / math.sqrt(lbn.running_var.item() + lbn.eps) * \
        lbn.weight.item() + lbn.bias.item()
    np.testing.assert_allclose(score.detach().numpy(), expected, atol=1e-6)


def test_multiply_mode_lets_an_occluded_zero_win_the_max():
    """The report's formula (corr * vis before the max) raises an occluded negative correlation to
    0, which then wins the max; the default mode never selects an occluded location."""
    gallery = torch.zeros(1, C, H, W).view(1, C, HW)
    probe = torch.zeros(1, C, H, W).view(1, C, HW)
    probe[0, 0] = 1.0  # every probe location points along +e0
    gallery[0, 0] = -1.0  # every gallery location points along -e0: all correlations are -1
    gallery[0, 1, 0] = 1.0  # gallery location 0 (occluded below) correlates best: -0.71
    gv = torch.ones(1, HW)
    gv[0, 0] = 0
    probe, gallery = probe.view(1, C, H, W), gallery.view(1, C, H, W)
    multiply = QAConvHead(C, H, W, weighting='multiply').eval()
    mask = QAConvHead(C, H, W, weighting='mask').eval()
    mask.load_state_dict(multiply.state_dict())
    for head in (multiply, mask):
        head.fc.bias.data.zero_()
    # By hand: multiply -> every probe location's max is the occluded 0; gallery direction: the
    # occluded location's max is 0 and the others -1, so (0 + (-1 * 5 + 0) / 6) / (1 + 1e-5).
    expected_multiply = (0.0 + (-5.0 / 6.0)) / (1 + 1e-5)
    # mask -> occluded gallery location excluded: probe direction all -1, gallery direction
    # weighted mean over the 5 visible locations, all -1.
    expected_mask = (-1.0 - 1.0) / (1 + 1e-5)
    assert multiply.match(probe, gallery, None, gv).item() == pytest.approx(
        expected_multiply, abs=1e-6)
    assert mask.match(probe, gallery, None, gv).item() == pytest.approx(expected_mask, abs=1e-6)
    # Non-finite features at the occluded location leak into the multiply score (0 * nan).
    poisoned = gallery.clone().view(1, C, HW)
    poisoned[0, :, 0] = float('nan')
    poisoned = poisoned.view(1, C, H, W)
    assert torch.isnan(multiply.match(probe, poisoned, None, gv)).all()
    assert mask.match(probe, poisoned, None, gv).item() == pytest.approx(expected_mask, abs=1e-6)


@pytest.mark.parametrize('with_vis', [False, True])
def test_chunked_equals_unchunked_and_pairs_equal_diagonal(with_vis):
    head = _randomise(QAConvHead(C, H, W)).eval()
    probe, gallery = _maps(7, 22), _maps(5, 23)
    pv, gv = (_vis(7, 24), _vis(5, 25)) if with_vis else (None, None)
    full = head.match(probe, gallery, pv, gv, chunk_size=100)
    for chunk in (1, 2, 3, (2, 3), (5, 1)):
        torch.testing.assert_close(
            head.match(probe, gallery, pv, gv, chunk_size=chunk), full, atol=1e-6, rtol=0)
    torch.testing.assert_close(head.match(probe, gallery, pv, gv), full, atol=1e-6, rtol=0)
    pairs = head.match_pairs(probe[:5], gallery, None if pv is None else pv[:5], gv, chunk_size=2)
    torch.testing.assert_close(pairs, full[:5].diagonal(), atol=1e-6, rtol=0)
    if with_vis:  # one side missing = all visible on that side
        torch.testing.assert_close(
            head.match_pairs(probe[:5], gallery, None, gv),
            head.match(probe[:5], gallery, None, gv).diagonal(),
            atol=1e-6,
            rtol=0)


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('with_vis', [False, True])
def test_match_pairs_equals_match_diagonal_at_full_size(qaconv_pairs, with_vis, train):
    """match_pairs (the compiled kernel in eval mode, the batched product of channel-major maps
    in train mode) against match's block layout."""
    head = QAConvHead(512, 7, 7)
    _randomise(head, seed=3).train(train)
    probe, gallery, pv, gv = qaconv_pairs(6, 40, with_vis)
    if train:  # batch statistics: the same set of pairs, (probe 0, gallery k) for every k
        n = probe.shape[0]
        rep_pv = None if pv is None else pv[:1].expand(n, -1)
        pairs = head.match_pairs(probe[:1].expand(n, -1, -1, -1), gallery, rep_pv, gv)
        torch.testing.assert_close(pairs, head.match(probe[:1], gallery, None if pv is None
                                                     else pv[:1], gv)[0], atol=1e-5, rtol=0)
        assert pairs.requires_grad
        return
    expected = head.match(probe, gallery, pv, gv).diagonal()
    torch.testing.assert_close(head.match_pairs(probe, gallery, pv, gv), expected, atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(head.match_pairs(probe, gallery, pv, gv, chunk_size=4), expected,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize('train', [False, True])
def test_forward_equals_match_of_batch_against_itself(train):
    head = _randomise(QAConvHead(C, H, W)).train(train)
    feats, vis = _maps(6, 26), _vis(6, 27)
    torch.testing.assert_close(head(feats, vis), head.match(feats, feats, vis, vis), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(head(feats), head.match(feats, feats), atol=1e-6, rtol=0)


def test_train_mode_refuses_chunking():
    head = QAConvHead(C, H, W).train()
    with pytest.raises(ValueError, match='chunk_size'):
        head.match(_maps(2, 0), _maps(2, 1), chunk_size=1)
    with pytest.raises(ValueError, match='chunk_size'):
        head.match_pairs(_maps(2, 0), _maps(2, 1), chunk_size=1)


@pytest.mark.parametrize('dtype,u', [(torch.bfloat16, 2.0**-8), (torch.float16, 2.0**-11)])
def test_reduced_precision_error_is_within_documented_bound(dtype, u):
    """Documented bound for a fresh head (docs/qaconv.md): 2 (3u + C 2^-24) / (1 + 1e-5)."""
    head = QAConvHead(512, 7, 7).eval()
    g = torch.Generator().manual_seed(28)
    probe, gallery = torch.randn(6, 512, 7, 7, generator=g), torch.randn(9, 512, 7, 7,
                                                                        generator=g)
    # Correlated maps, so the maxima sit near 1 where rounding is coarsest.
    gallery[:3] = probe[:3] + 0.3 * gallery[:3]
    exact = head.match(probe, gallery)
    reduced = head.match(probe, gallery, dtype=dtype)
    error = (reduced - exact).abs().max().item()
    assert reduced.dtype == torch.float32
    assert error <= 2 * (3 * u + 512 * 2.0**-24) / (1 + 1e-5)
    assert error > 0  # the reduced path really ran in reduced precision


def test_gradients_reach_features_and_parameters():
    head = QAConvHead(C, H, W).train()
    feats = _maps(4, 29).requires_grad_()
    vis = _vis(4, 30)
    target = torch.randn(4, 4, generator=torch.Generator().manual_seed(31))
    (head(feats, vis) * target).sum().backward()
    visible = (vis > 0).view(4, 1, H, W).expand_as(feats)
    assert feats.grad[visible].abs().sum() > 0
    assert torch.all(feats.grad[~visible] == 0)
    # In train mode logit_bn removes any common shift/scale of the logits, so (as in the
    # reference) bn's affine and fc's bias get no gradient; fc's weight and logit_bn do.
    for p in (head.fc.weight, head.logit_bn.weight, head.logit_bn.bias):
        assert p.grad.abs().sum() > 1e-3


def test_bad_inputs_raise_naming_the_argument():
    head = QAConvHead(C, H, W).eval()
    ok = _maps(2, 0)
    with pytest.raises(ValueError, match='probe'):
        head.match(torch.randn(2, C + 1, H, W), ok)
    with pytest.raises(ValueError, match='gallery'):
        head.match(ok, torch.randn(2, C, H + 1, W))
    with pytest.raises(ValueError, match='gallery_vis'):
        head.match(ok, ok, None, torch.ones(3, HW))
    with pytest.raises(ValueError, match='probe_vis'):
        head.match(ok, ok, torch.full((2, HW), 1.5))
    with pytest.raises(ValueError, match='dtype'):
        head.match(ok, ok, dtype=torch.float64)
    with pytest.raises(ValueError, match='chunk_size'):
        head.match(ok, ok, chunk_size=0)
    with pytest.raises(ValueError, match='chunk_size'):
        head.match(ok, ok, chunk_size=(2, 0))
    with pytest.raises(ValueError, match='weighting'):
        QAConvHead(weighting='max')


def test_registered():
    cfg = dict(type='QAConvHead', _scope_='mmoaml', num_features=C, height=H, width=W)
    head = MODELS.build(cfg)
    assert isinstance(head, QAConvHead) and head.weighting == 'mask'
