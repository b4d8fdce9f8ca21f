"""mmoaml.deployment.qaconv_numpy: NumPy QAConv scores equal QAConvHead.match / match_pairs."""
import numpy as np
import pytest
import torch

from mmoaml.deployment import (QACONV_PARAM_KEYS, load_qaconv_params, qaconv_pair_scores,
                               qaconv_params, qaconv_scores, save_qaconv_params)
from mmoaml.models import QAConvHead

C, H, W = 16, 3, 3
TOL = 1e-5


def _trained_head(weighting='mask', seed=0):
    """A head in eval mode whose BN running statistics and affine parameters are not the
    defaults, and whose fc is not the initial average."""
    torch.manual_seed(seed)
    head = QAConvHead(num_features=C, height=H, width=W, weighting=weighting)
    with torch.no_grad():
        head.bn.running_mean.fill_(0.31)
        head.bn.running_var.fill_(0.045)
        head.bn.weight.fill_(1.7)
        head.bn.bias.fill_(-0.2)
        head.bn.eps = 1e-3
        head.fc.weight.copy_(torch.rand(1, H * W) / (H * W) + 0.02)
        head.fc.bias.fill_(0.4)
        head.logit_bn.running_mean.fill_(-0.6)
        head.logit_bn.running_var.fill_(2.5)
        head.logit_bn.weight.fill_(0.8)
        head.logit_bn.bias.fill_(0.1)
    return head.eval()


def _maps(n, seed, correlated_with=None):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, C, H, W, generator=generator)
    if correlated_with is not None:  # same identity: high-scoring pairs too
        source = correlated_with[torch.arange(n) % len(correlated_with)]
        maps = source + 0.5 * maps
    return maps


def _vis(n, seed, zeros=True, soft=True):
    generator = torch.Generator().manual_seed(seed)
    vis = torch.rand(n, 1, H, W, generator=generator) if soft else torch.ones(n, 1, H, W)
    if zeros:
        vis[::2, :, 2:] = 0  # lower rows hidden in every other map
        vis[1, :, 0, 0] = 0
    if n > 3:
        vis[3] = 0  # a map with no visible location at all
    return vis


def _np(x):
    return None if x is None else x.numpy()


CASES = {
    'no visibility': (None, None),
    'probe visibility only': ('probe', None),
    'gallery visibility only': (None, 'gallery'),
    'soft with zeros': ('probe', 'gallery'),
    'binary with zeros': ('binary', 'binary'),
    'soft without zeros': ('nozeros', 'nozeros'),
    'all ones': ('ones', 'ones'),
}


def _case_vis(kind, n, seed):
    if kind is None:
        return None
    if kind == 'binary':
        return _vis(n, seed, soft=False)
    if kind == 'nozeros':
        return _vis(n, seed, zeros=False).clamp_min(0.05)
    if kind == 'ones':
        return torch.ones(n, 1, H, W)
    return _vis(n, seed)


@pytest.mark.parametrize('weighting', ['mask', 'multiply'])
@pytest.mark.parametrize('case', list(CASES))
def test_scores_equal_match_and_match_pairs(case, weighting):
    head = _trained_head(weighting)
    params = qaconv_params(head)
    probe = _maps(5, 1)
    gallery = _maps(6, 2, correlated_with=probe)
    pv = _case_vis(CASES[case][0], 5, 3)
    gv = _case_vis(CASES[case][1], 6, 4)
    with torch.no_grad():
        expected = head.match(probe, gallery, pv, gv).numpy()
        expected_pairs = head.match_pairs(probe, gallery[:5], pv,
                                          None if gv is None else gv[:5]).numpy()
    got = qaconv_scores(probe.numpy(), gallery.numpy(), _np(pv), _np(gv), params=params)
    got_pairs = qaconv_pair_scores(probe.numpy(), gallery[:5].numpy(), _np(pv),
                                   None if gv is None else gv[:5].numpy(), params=params)
    assert got.shape == (5, 6) and got.dtype == np.float32
    assert got_pairs.shape == (5, ) and got_pairs.dtype == np.float32
    diff = float(np.abs(got - expected).max())
    diff_pairs = float(np.abs(got_pairs - expected_pairs).max())
    print(f'numpy vs torch ({case}, {weighting}): match {diff:.3g}, match_pairs '
          f'{diff_pairs:.3g}')
    assert diff <= TOL and diff_pairs <= TOL
    # The scores are not trivial: they vary over the pairs.
    assert float(np.ptp(expected)) > 0.1


def test_exported_float16_maps_and_flat_visibility():
    """Maps stored as OAML.predict does (float16, normalised) and [N, hw] visibility."""
    head = _trained_head()
    probe = torch.nn.functional.normalize(_maps(4, 5), dim=1).half()
    gallery = torch.nn.functional.normalize(_maps(3, 6), dim=1).half()
    pv, gv = _vis(4, 7).flatten(1), _vis(3, 8).flatten(1)
    with torch.no_grad():
        expected = head.match(probe, gallery, pv, gv).numpy()
    got = qaconv_scores(probe.numpy(), gallery.numpy(), pv.numpy(), gv.numpy(),
                        params=qaconv_params(head))
    assert np.abs(got - expected).max() <= TOL


def test_hidden_locations_are_never_read():
    head = _trained_head()
    params = qaconv_params(head)
    probe, gallery = _maps(4, 9).numpy(), _maps(4, 10).numpy()
    pv, gv = _vis(4, 11).numpy(), _vis(4, 12).numpy()
    reference = qaconv_scores(probe, gallery, pv, gv, params=params)
    poisoned_p, poisoned_g = probe.copy(), gallery.copy()
    poisoned_p[np.broadcast_to(pv <= 0, probe.shape)] = np.nan
    poisoned_g[np.broadcast_to(gv <= 0, gallery.shape)] = 1e6
    got = qaconv_scores(poisoned_p, poisoned_g, pv, gv, params=params)
    np.testing.assert_array_equal(got, reference)
    # A map with no visible location (index 3) gets logit_bn(2 * fc bias) against anything.
    beta = float(params['fc.bias'][0])
    mean, var = float(params['logit_bn.running_mean'][0]), float(params['logit_bn.running_var'][0])
    lonely = (2 * beta - mean) / np.sqrt(var + float(params['logit_bn.eps'])) * float(
        params['logit_bn.weight'][0]) + float(params['logit_bn.bias'][0])
    np.testing.assert_allclose(got[3], lonely, atol=1e-6)
    np.testing.assert_allclose(got[:, 3], lonely, atol=1e-6)


def test_large_blocks_are_chunked_like_one_block(monkeypatch):
    import mmoaml.deployment.qaconv_numpy as module
    head = _trained_head()
    params = qaconv_params(head)
    probe, gallery = _maps(7, 13).numpy(), _maps(5, 14).numpy()
    pv, gv = _vis(7, 15).numpy(), _vis(5, 16).numpy()
    whole = qaconv_scores(probe, gallery, pv, gv, params=params)
    pairs = qaconv_pair_scores(probe[:5], gallery, pv[:5], gv, params=params)
    monkeypatch.setattr(module, '_BLOCK_BYTES', 1)
    np.testing.assert_array_equal(qaconv_scores(probe, gallery, pv, gv, params=params), whole)
    np.testing.assert_array_equal(
        qaconv_pair_scores(probe[:5], gallery, pv[:5], gv, params=params), pairs)
    np.testing.assert_allclose(pairs, np.diag(whole[:5]), atol=1e-6)


def test_params_round_trip_through_npz(tmp_path):
    head = _trained_head('multiply')
    params = qaconv_params(head)
    assert set(params) == set(QACONV_PARAM_KEYS)
    path = tmp_path / 'qaconv.npz'
    save_qaconv_params(str(path), params)
    with np.load(path, allow_pickle=False) as data:  # nothing pickled
        assert sorted(data.files) == sorted(QACONV_PARAM_KEYS)
    loaded = load_qaconv_params(str(path))
    assert str(loaded['weighting']) == 'multiply' and float(loaded['bn.eps']) == 1e-3
    for key in QACONV_PARAM_KEYS:
        np.testing.assert_array_equal(loaded[key], params[key])


def test_bad_inputs_are_refused():
    params = qaconv_params(_trained_head())
    maps = np.zeros((2, C, H, W), dtype=np.float32)
    with pytest.raises(ValueError, match='probe must be'):
        qaconv_scores(maps[:, :4], maps, params=params)
    with pytest.raises(ValueError, match=r'gallery_vis must lie in \[0, 1\]'):
        qaconv_scores(maps, maps, gallery_vis=np.full((2, H * W), 2.0), params=params)
    with pytest.raises(ValueError, match='probe_vis must be'):
        qaconv_scores(maps, maps, probe_vis=np.ones((2, 4)), params=params)
    with pytest.raises(ValueError, match='aligned'):
        qaconv_pair_scores(maps, maps[:1], params=params)
    with pytest.raises(KeyError, match='lack'):
        qaconv_scores(maps, maps, params={k: v for k, v in params.items() if k != 'fc.bias'})
    with pytest.raises(ValueError, match='weighting'):
        qaconv_scores(maps, maps, params={**params, 'weighting': np.array('sum')})
