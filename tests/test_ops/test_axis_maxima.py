"""mmoaml.ops.axis_first_maxima: where it applies, and threads. Its values and indices against
torch.max (ties, signed zeros, NaN, infinities, short and long axes) are tested through
first_maxima in tests/test_models/test_first_maxima.py."""
import pytest
import torch

from mmoaml.ops import axis_first_maxima
from mmoaml.ops.axis_maxima import load_kernel


def test_threads_split_the_rows_without_changing_a_bit():
    if load_kernel() is None:
        pytest.fail('the axis-maxima kernel did not build; every CI machine has a C compiler')
    x = torch.randn(40, 49, 49, 20).to(torch.bfloat16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [axis_first_maxima(x, d) for d in (1, 2)]
        torch.set_num_threads(3)
        three = [axis_first_maxima(x, d) for d in (1, 2)]
    finally:
        torch.set_num_threads(threads)
    for (v1, i1), (v3, i3), d in zip(one, three, (1, 2)):
        assert torch.equal(v1, v3) and torch.equal(i1, i3)
        assert torch.equal(i1, x.max(d).indices) and v1.dtype == torch.bfloat16


@pytest.mark.parametrize('dtype', [torch.float16, torch.float64, torch.int32])
def test_other_dtypes_are_left_to_the_caller(dtype):
    assert axis_first_maxima(torch.ones(3, 4, 5).to(dtype), 1) is None


def test_switched_off_or_empty(monkeypatch):
    assert axis_first_maxima(torch.ones(0, 4, 5), 1) is None
    monkeypatch.setenv('MMOAML_NATIVE', '0')
    assert axis_first_maxima(torch.ones(3, 4, 5), 1) is None
