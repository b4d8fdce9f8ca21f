"""first_maxima equals torch.max (maxima, first indices, gradients) on the inputs where its
integer keys or its compiled kernel could go wrong: ties, float32 near-ties, signed zeros, NaN,
infinities. Every test runs through the compiled kernel and through the keys."""
import pytest
import torch

from mmoaml.models.first_maxima import first_maxima
from mmoaml.ops.axis_maxima import load_kernel


@pytest.fixture(autouse=True, params=['compiled', 'keys'])
def path(request, monkeypatch):
    if request.param == 'keys':
        monkeypatch.setenv('MMOAML_NATIVE', '0')
    elif load_kernel() is None:
        pytest.fail('the axis-maxima kernel did not build; every CI machine has a C compiler')
    return request.param

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _block(dtype, infinity=float('inf'), shape=(5, 49, 49, 32), seed=0):
    """A QAConv-like correlation block with every hard case planted in it (one sign of
    infinity: both would make its sum NaN, which sends 16-bit input to torch.max whole)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) * 2 - 1).to(dtype)
    x[0, 1, 7] = x[0, 1, 3]  # exact ties along dim 2 ...
    x[0, 4, :, 2] = x[0, 9, :, 2]  # ... and along dim 1
    x[1, 2] = -4.0  # whole rows of one value (hidden locations)
    x[1, :, 5, 0] = -0.5  # a zero maximum, -0.0 before 0.0 (a tie for torch.max)
    x[1, 3, 5, 0], x[1, 6, 5, 0] = -0.0, 0.0
    x[2, 8, 11, 4] = infinity
    return x


@pytest.mark.parametrize('infinity', (float('inf'), float('-inf')))
@pytest.mark.parametrize('dtype', DTYPES)
def test_equals_torch_max_with_ties_signed_zeros_and_infinities(dtype, infinity):
    x = _block(dtype, infinity)
    for (values, index), d in zip(first_maxima(x, (2, 1)), (2, 1)):
        expected = x.max(d)
        torch.testing.assert_close(values, expected.values, atol=0, rtol=0)
        assert torch.equal(index, expected.indices)
    # bfloat16 rounding of 49 candidates ties often: the first one must win
    if dtype != torch.float32:
        assert (x.max(2).values.unsqueeze(2) == x).sum(2).gt(1).any()


def test_float32_near_ties_take_the_larger_value_not_the_earlier_position():
    """Keys drop low bits of float32 values: values one ulp apart must still be told apart."""
    x = _block(torch.float32)
    row = x[3, 0, :, 0]
    row[:] = -0.5
    row[10] = 0.75
    row[4] = torch.nextafter(torch.tensor(0.75), torch.tensor(0.0))  # earlier, one ulp lower
    (values, index), = first_maxima(x, (1, ))
    assert torch.equal(index, x.max(1).indices) and torch.equal(values, x.max(1).values)
    (values, index), = first_maxima(x, (2, ))
    assert index[3, 0, 0] == 10 and values[3, 0, 0] == 0.75


@pytest.mark.parametrize('dtype', DTYPES)
def test_nan_propagates_as_in_torch_max(dtype):
    x = _block(dtype)
    x[4, 20, 30, 9] = float('nan')
    for (values, index), d in zip(first_maxima(x, (2, 1)), (2, 1)):
        expected = x.max(d)
        torch.testing.assert_close(values, expected.values, atol=0, rtol=0, equal_nan=True)
        assert torch.equal(index, expected.indices)


@pytest.mark.parametrize('shape,dims', [((49, 49, 32), (0, 1)), ((7, 49, 49, 1), (2, 1)),
                                        ((3, 300, 40), (1, ))])
def test_leading_reduced_dims_short_inner_runs_and_long_axes(shape, dims):
    """A reduced dim 0 (no slabs), an inner run too short for keys, a 300-long axis."""
    x = torch.rand(shape).to(torch.bfloat16)
    for (values, index), d in zip(first_maxima(x, dims), dims):
        assert torch.equal(values, x.max(d).values) and torch.equal(index, x.max(d).indices)


@pytest.mark.parametrize('dtype', (torch.float32, torch.bfloat16))
def test_gradients_reach_the_chosen_element_only_as_through_torch_max(dtype):
    x = _block(dtype).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    weights = [torch.rand(x.shape[:d] + x.shape[d + 1:]).to(dtype) for d in (2, 1)]
    got = first_maxima(x, (2, 1))
    sum((v.float() * w).sum() for (v, _), w in zip(got, weights)).backward()
    sum((ref.max(d).values.float() * w).sum() for d, w in zip((2, 1), weights)).backward()
    assert torch.equal(x.grad, ref.grad)

