"""mmoaml.ops.aligned_pair_maxima (the compiled kernel) against the definition: maxima of each
aligned pair's cosine block, first indices (torch.max's rules: ties, NaN), hidden locations,
bfloat16 rounding, threads; and QAConvHead.match_pairs with and without it."""
import ctypes
import platform

import numpy as np
import pytest
import torch

from mmoaml.models.heads import QAConvHead
from mmoaml.ops import aligned_pair_maxima, aligned_pairs, load_library
from mmoaml.ops.aligned_pairs import ARGTYPES, SOURCE, SYMBOL, load_kernel
from mmoaml.ops.native import FLAGS, bind

HIDDEN = -4.0
# (pairs, channels, locations): maps smaller than a vector, 7x7 (48 tiled + 1 leftover column,
# 7 x 7 tile rows), leftover rows and columns, an odd channel count (a half-empty bfloat16 word)
SHAPES = [(3, 4, 6), (5, 512, 49), (4, 33, 50), (2, 40, 97), (3, 7, 16), (2, 5, 1)]


@pytest.fixture(autouse=True)
def compiled():
    if load_kernel() is None:
        pytest.fail('the kernel did not build here; every CI machine has a C compiler')


def _maps(n, c, hw, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, hw, generator=g), torch.randn(n, c, hw, generator=g)


def _bf16(x):
    """float32 -> bfloat16 -> float64: the values the kernel multiplies in bfloat16 mode."""
    return x.to(torch.bfloat16).double()


def _definition(probe, gallery, bf16=False, hidden_p=None, hidden_g=None):
    """Cosine blocks in float64 from the formula: products of the (rounded) maps over the
    float32 norms, then the hidden value."""
    norms_p = probe.double().norm(dim=1).clamp_min(1e-12)
    norms_g = gallery.double().norm(dim=1).clamp_min(1e-12)
    p, g = (_bf16(probe), _bf16(gallery)) if bf16 else (probe.double(), gallery.double())
    S = torch.einsum('ncr,ncs->nrs', p, g) / norms_p[:, :, None] / norms_g[:, None, :]
    if hidden_p is not None:
        S = S.masked_fill(hidden_p[:, :, None] | hidden_g[:, None, :], HIDDEN)
    return S


def _first_max(S, dim):
    """Maximum along dim and the first index reaching it, with plain numpy (NaN wins, the first
    one)."""
    a = np.moveaxis(S.numpy(), dim, -1)
    best = np.empty(a.shape[:-1])
    at = np.empty(a.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(*a.shape[:-1]):
        row = a[idx]
        nan = np.flatnonzero(np.isnan(row))
        at[idx] = nan[0] if nan.size else int(np.flatnonzero(row == row.max())[0])
        best[idx] = row[at[idx]]
    return torch.from_numpy(best), torch.from_numpy(at)


@pytest.mark.parametrize('bf16', [False, True])
@pytest.mark.parametrize('shape', SHAPES)
def test_maxima_and_first_indices_match_the_definition(shape, bf16):
    probe, gallery = _maps(*shape, seed=1)
    gallery[:1] = probe[:1] + 0.3 * gallery[:1]  # a correlated pair: maxima near 1
    g = torch.Generator().manual_seed(2)
    hidden_p = torch.rand(shape[0], shape[2], generator=g) < 0.25
    hidden_g = torch.rand(shape[0], shape[2], generator=g) < 0.25
    for masks in ((None, None), (hidden_p, hidden_g)):
        S = _definition(probe, gallery, bf16, *masks)
        max_p, arg_p, max_g, arg_g = aligned_pair_maxima(probe, gallery, bf16, *masks, HIDDEN)
        for got, at, dim in ((max_p, arg_p, 2), (max_g, arg_g, 1)):
            best, first = _first_max(S, dim)
            assert got.dtype == torch.float32 and at.dtype == torch.int64
            np.testing.assert_allclose(got.numpy(), best.numpy(), atol=2e-6, rtol=0)
            # Indices agree wherever the runner-up is not within float32 rounding.
            top2 = S.topk(2, dim=dim).values if shape[2] > 1 else None
            clear = (top2.select(dim, 0) - top2.select(dim, 1) > 1e-5) if top2 is not None \
                else torch.ones_like(first, dtype=torch.bool)
            assert clear.float().mean() > 0.5
            assert torch.equal(at[clear], first[clear])


def test_ties_take_the_first_location_and_hidden_rows_the_hidden_value():
    probe, gallery = _maps(2, 64, 49, seed=3)
    gallery[:, :, 30] = gallery[:, :, 10]  # equal gallery locations: equal columns of S ...
    probe[:, :, 0] = 2 * gallery[:, :, 10]  # ... both the best match (cosine 1) of probe 0
    probe[:, :, 40] = probe[:, :, 5]  # equal probe locations: equal rows ...
    gallery[:, :, 3] = probe[:, :, 5]  # ... both the best match of gallery 3
    hidden_p = torch.zeros(2, 49, dtype=torch.bool)
    hidden_p[1, :] = True  # the second probe map is hidden everywhere
    max_p, arg_p, max_g, arg_g = aligned_pair_maxima(probe, gallery, False, hidden_p, None,
                                                     HIDDEN)
    assert arg_p[0, 0] == 10 and max_p[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert arg_g[0, 3] == 5 and max_g[0, 3] == pytest.approx(1.0, abs=1e-6)
    assert not (arg_p[0] == 30).any() and not (arg_g[0] == 40).any()
    assert torch.all(max_p[1] == HIDDEN) and torch.all(arg_p[1] == 0)
    assert torch.all(max_g[1] == HIDDEN) and torch.all(arg_g[1] == 0)


def test_nan_is_the_maximum_at_its_first_location():
    probe, gallery = _maps(1, 32, 49, seed=4)
    probe[0, 3, 7] = float('nan')  # probe location 7: its whole row of S is NaN
    gallery[0, 0, 20] = float('nan')  # gallery location 20: its whole column
    max_p, arg_p, max_g, arg_g = aligned_pair_maxima(probe, gallery, False, None, None, HIDDEN)
    assert torch.isnan(max_p).all() and torch.isnan(max_g).all()
    assert arg_p[0, 7] == 0 and torch.all(arg_p[0, torch.arange(49) != 7] == 20)
    assert arg_g[0, 20] == 0 and torch.all(arg_g[0, torch.arange(49) != 20] == 7)
    # Hidden, the same locations no longer reach any maximum.
    hidden_p = torch.zeros(1, 49, dtype=torch.bool)
    hidden_g = torch.zeros(1, 49, dtype=torch.bool)
    hidden_p[0, 7], hidden_g[0, 20] = True, True
    max_p, arg_p, max_g, arg_g = aligned_pair_maxima(probe, gallery, False, hidden_p, hidden_g,
                                                     HIDDEN)
    assert torch.isfinite(max_p).all() and torch.isfinite(max_g).all()
    assert max_p[0, 7] == HIDDEN and not (arg_p[0] == 20).any()


def test_threads_split_the_pairs_without_changing_a_bit():
    probe, gallery = _maps(50, 48, 49, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = aligned_pair_maxima(probe, gallery, True, None, None, HIDDEN)
        torch.set_num_threads(3)
        three = aligned_pair_maxima(probe, gallery, True, None, None, HIDDEN)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, three))


@pytest.mark.parametrize('with_vis', [False, True])
def test_match_pairs_with_and_without_the_kernel(monkeypatch, qaconv_pairs, with_vis):
    """The kernel path against the head's PyTorch path (MMOAML_NATIVE=0) at 7x7x512: float32
    to rounding with non-default BN and fc; bfloat16 (fresh head, binary visibility) within the
    sum of the two paths' error bounds of docs/qaconv.md: 3u + C 2^-24 per correlation for the
    PyTorch path, which rounds each correlation to bfloat16, 2u + C 2^-24 for the kernel, which
    does not."""
    probe, gallery, pv, gv = qaconv_pairs(40, 6, with_vis)

    def both_paths(head, dtype, pv, gv):
        compiled = head.match_pairs(probe, gallery, pv, gv, dtype=dtype)
        with monkeypatch.context() as patch:
            patch.setenv('MMOAML_NATIVE', '0')
            return compiled, head.match_pairs(probe, gallery, pv, gv, dtype=dtype)

    tuned = QAConvHead().eval()
    with torch.no_grad():
        tuned.fc.weight.uniform_(0.0, 0.05, generator=torch.Generator().manual_seed(6))
        tuned.bn.running_var.fill_(0.5)
    compiled, reference = both_paths(tuned, None, pv, gv)
    torch.testing.assert_close(compiled, reference, atol=1e-5, rtol=0)
    # The bound holds for binary visibility (the same weights in both precisions).
    binary = [None if v is None else (v > 0).float() for v in (pv, gv)]
    compiled, reference = both_paths(QAConvHead().eval(), torch.bfloat16, *binary)
    u, c = 2.0**-8, 512 * 2.0**-24
    bound = 2 * ((3 * u + c) + (2 * u + c)) / (1 + 1e-5)
    assert 0 < (compiled - reference).abs().max() <= bound  # both ran, in different ways


def test_match_pairs_bfloat16_error_is_within_documented_bound():
    """docs/qaconv.md's bound for a fresh head, 2 (3u + C 2^-24) / (1 + 1e-5) with u = 2^-8,
    holds for the kernel's bfloat16 mode too."""
    head = QAConvHead().eval()
    g = torch.Generator().manual_seed(7)
    probe, gallery = torch.randn(30, 512, 7, 7, generator=g), torch.randn(30, 512, 7, 7,
                                                                        generator=g)
    gallery[:15] = probe[:15] + 0.3 * gallery[:15]
    error = (head.match_pairs(probe, gallery, dtype=torch.bfloat16) -
             head.match_pairs(probe, gallery)).abs().max().item()
    assert 0 < error <= 2 * (3 * 2.0**-8 + 512 * 2.0**-24) / (1 + 1e-5)


@pytest.mark.parametrize('march', [None, 'x86-64-v3'])
def test_builds_without_avx512_give_the_same_maxima(monkeypatch, tmp_path, march):
    """The kernel's portable code (8-lane vectors, bfloat16 products widened in software),
    built for the baseline of the machine's ISA or for AVX2, against the native build."""
    if march and platform.machine() != 'x86_64':
        pytest.fail('CI runs on x86_64; this case needs an x86_64 compiler target')
    g = torch.Generator().manual_seed(8)
    cases = []
    for n, c, hw in SHAPES:
        probe, gallery = torch.randn(n, c, hw, generator=g), torch.randn(n, c, hw, generator=g)
        hidden = torch.rand(n, hw, generator=g) < 0.25
        cases += [(probe, gallery, bf16, hidden, None, HIDDEN) for bf16 in (False, True)]
    native = [aligned_pair_maxima(*case) for case in cases]
    monkeypatch.setenv('MMOAML_CACHE', str(tmp_path))
    flags = [f for f in FLAGS if f != '-march=native'] + ([f'-march={march}'] if march else [])
    portable = bind(load_library(SOURCE, flags), SYMBOL, ARGTYPES, ctypes.c_int)
    monkeypatch.setattr(aligned_pairs, 'load_kernel', lambda: portable)
    for case, expected in zip(cases, native):
        got = aligned_pair_maxima(*case)
        torch.testing.assert_close(got[0], expected[0], atol=2e-6, rtol=0)
        torch.testing.assert_close(got[2], expected[2], atol=2e-6, rtol=0)
        agree = (got[1] == expected[1]).float().mean() + (got[3] == expected[3]).float().mean()
        assert agree > 1.9  # indices may differ only where two maxima round alike
