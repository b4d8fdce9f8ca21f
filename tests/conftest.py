"""Fixtures shared by the whole test suite."""
import contextlib
import os
import resource
import tracemalloc

import pytest

# --doctest-modules imports every .py file under its plain name, so the several conftest.py
# files of the suite (they hold no doctest) would clash as modules named 'conftest'.
collect_ignore_glob = ['*conftest.py']


@pytest.fixture
def peak_memory():
    """Context manager measuring the tracemalloc peak (bytes) of its body in ``.bytes``.

    The body also runs under an address-space cap 1 GiB above the current size, so code that
    tries to allocate tens of gigabytes (the regression such a test exists for) fails with
    ``MemoryError`` instead of exhausting the machine the tests share.
    """

    class Peak:
        bytes = None

    @contextlib.contextmanager
    def measure():
        peak = Peak()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open('/proc/self/statm') as f:
            cap = int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE') + (1 << 30)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        tracemalloc.start()
        try:
            yield peak
        finally:
            peak.bytes = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    return measure


@pytest.fixture
def safe_loader():
    """mmoaml's safe checkpoint loader, which its entry points (tools, ``register_all_modules``)
    install and the import does not: tests that resume through a bare Runner need it."""
    from mmoaml.fileio import install_safe_checkpoint_loader
    install_safe_checkpoint_loader()


@pytest.fixture
def qaconv_pairs():
    """``make(n, seed, with_vis)`` -> ``(probe, gallery, probe_vis, gallery_vis)``: ``n``
    aligned pairs of random 7x7x512 maps, the first half correlated (maxima near 1), and, with
    ``with_vis``, soft visibility with about a fifth hidden (``[n, 49]`` and ``[n, 1, 7, 7]``,
    both layouts the head takes); else None."""
    import torch

    def make(n, seed, with_vis):
        g = torch.Generator().manual_seed(seed)
        probe, gallery = (torch.randn(n, 512, 7, 7, generator=g) for _ in range(2))
        gallery[:n // 2] = probe[:n // 2] + 0.5 * gallery[:n // 2]
        if not with_vis:
            return probe, gallery, None, None
        pv = torch.rand(n, 49, generator=g) * (torch.rand(n, 49, generator=g) > 0.2)
        gv = torch.rand(n, 1, 7, 7, generator=g) * (torch.rand(n, 1, 7, 7, generator=g) > 0.2)
        return probe, gallery, pv, gv

    return make


def pytest_collection_modifyitems(config, items):
    """Run the tests marked ``forks_training`` first.

    They fork worker processes that run backward passes, and PyTorch refuses backward in a
    child forked after the parent started autograd's worker threads, which any earlier test
    in this process may have done (e.g. the dynamo ONNX exporter): the order must not decide
    whether they pass.
    """
    items.sort(key=lambda item: item.get_closest_marker('forks_training') is None)
