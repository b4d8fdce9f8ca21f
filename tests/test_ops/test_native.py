"""mmoaml.ops.native: one build per source, compiler and CPU, reused from the cache; a machine
without a compiler (or MMOAML_NATIVE=0) gets the PyTorch path, with one warning."""
import multiprocessing
import warnings

import pytest
import torch

from mmoaml.models.heads import QAConvHead
from mmoaml.ops import (NativeUnavailable, aligned_pair_maxima, cache_dir, load_function,
                        load_library)
from mmoaml.ops.aligned_pairs import SOURCE


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty library cache, and the kernels loaded anew before and after the test."""
    monkeypatch.setenv('MMOAML_CACHE', str(tmp_path))
    load_function.cache_clear()
    yield tmp_path / 'native'
    load_function.cache_clear()


def test_builds_once_into_the_cache_and_reuses_it(fresh_cache):
    assert cache_dir() == fresh_cache
    load_library(SOURCE)
    built = list(fresh_cache.glob('aligned_pairs-*.so'))
    assert len(built) == 1 and list(fresh_cache.iterdir()) == built  # no temporary file left
    stamp = built[0].stat().st_mtime_ns
    load_library(SOURCE)
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_an_edited_source_gets_its_own_library(fresh_cache, tmp_path):
    copy = tmp_path / 'aligned_pairs.c'
    copy.write_text(SOURCE.read_text() + '\n/* edited */\n')
    load_library(SOURCE)
    load_library(copy)
    assert len(list(fresh_cache.glob('aligned_pairs-*.so'))) == 2


def test_without_a_compiler_match_pairs_warns_once_and_scores_the_same(fresh_cache,
                                                                       monkeypatch):
    head = QAConvHead().eval()
    g = torch.Generator().manual_seed(0)
    probe, gallery = torch.randn(3, 512, 7, 7, generator=g), torch.randn(3, 512, 7, 7,
                                                                      generator=g)
    expected = head.match_pairs(probe, gallery)  # through the kernel
    monkeypatch.setenv('CC', '/nonexistent/cc')
    load_function.cache_clear()
    with pytest.raises(NativeUnavailable, match='/nonexistent/cc'):
        load_library(SOURCE)
    with pytest.warns(UserWarning, match='aligned_pairs.c is unavailable.*PyTorch path'):
        scores = head.match_pairs(probe, gallery)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the second call is silent
        head.match_pairs(probe, gallery)


def test_a_failing_build_names_the_source_and_the_compiler_message(fresh_cache, tmp_path):
    broken = tmp_path / 'broken.c'
    broken.write_text('int f(void) { return missing; }\n')
    with pytest.raises(NativeUnavailable, match=r'broken\.c.*missing'):
        load_library(broken)
    assert not list(fresh_cache.glob('*'))  # no library and no temporary file left behind


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv('MMOAML_NATIVE', '0')
    probe = torch.randn(2, 8, 6)
    assert aligned_pair_maxima(probe, probe, False, None, None, -4.0) is None


def test_a_forked_child_gets_threads_of_its_own():
    """The thread pool of the parent has no threads in a forked child; the child must not wait
    on them."""
    probe = torch.randn(40, 16, 49)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = aligned_pair_maxima(probe, probe, False, None, None, -4.0)[1]
        ctx = multiprocessing.get_context('fork')
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_pair_indices_in_child, (probe, )).get(timeout=60)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, expected)


def _pair_indices_in_child(probe):
    torch.set_num_threads(2)
    return aligned_pair_maxima(probe, probe, False, None, None, -4.0)[1]
