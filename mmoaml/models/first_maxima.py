"""``torch.max(x, dim)`` over several dims of one tensor, fast on the CPU.

On the CPU, ``torch.max(x, dim)`` with indices reduces a middle axis one element at a time,
about 20x slower than ``amax`` over the same axis, which vectorises across the contiguous
inner axis (QAConv's ``[p, hw, hw, g]`` correlation blocks with ``g = 64``). For float32 and
bfloat16 :func:`first_maxima` takes each dim from the compiled kernel of
:func:`mmoaml.ops.axis_first_maxima` (one vectorised pass a dim, about the cost of ``amax``).
Where that kernel is unavailable (no C compiler, ``MMOAML_NATIVE=0``) or for float16, it keeps
``amax``'s speed for the indices through integer keys: each element becomes an int32 key
that orders like the float value and carries, in its low bits, the reversed position along
every reduced dim, so that ``amax`` of the keys along one dim picks the largest value and,
among equal values, the first position: ``torch.max``'s rule.

A bfloat16 (float16) value widened to float32 leaves 16 (13) low bits zero, so its key holds
the value exactly and decodes back to it. A float32 key drops as many low bits of the value as the
positions need, so values that differ only there tie on the key; there the position is checked
against ``amax`` of the values, and the rare rows that fail are taken from ``torch.max``. Keys
order ``-0.0`` below ``0.0`` (a tie for ``torch.max``), so rows whose maximum is zero go to
``torch.max`` as well, and a tensor holding NaN goes to ``torch.max`` whole (16-bit) or row by
row (float32). The result equals ``torch.max``'s, indices included; where autograd records,
values are gathered at the indices, so gradients flow as through ``torch.max`` (to the chosen
element only, where ``amax`` would split them between ties).

Keys are built and reduced in slabs of the leading dim (when it is not reduced) that fit in
cache: a whole 8-16 MB block of keys costs more in page faults and memory traffic than the
reductions themselves.
"""
import math
from typing import List, Sequence, Tuple

import torch

from mmoaml.ops import axis_first_maxima

_MAGNITUDE = 2**31 - 1  # all bits of a float32 but the sign
# Low bits of a 16-bit float widened to float32 that are always zero (23 - 7 or 23 - 10).
_WIDENED_FREE_BITS = {torch.bfloat16: 16, torch.float16: 13}
_FLOAT32_CODE_BITS = 20  # at most this many float32 value bits are dropped for positions
_SLAB_ELEMENTS = 2**19  # elements per slab: 2 MB of keys
# torch.max is as fast when fewer elements than this follow the reduced dims (measured on
# [n, 49, 49, m] blocks: keys win 2-4x at m = 64, lose up to 2x at m <= 8 in float32).
_MIN_INNER = 16


def _to_keys(bits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """float32 bits (int32) -> keys in float order, written to ``out``: negative floats order
    backwards as integers, so their magnitude bits are flipped. The map undoes itself."""
    torch.bitwise_right_shift(bits, 31, out=out)
    return out.bitwise_and_(_MAGNITUDE).bitwise_xor_(bits)


def _position(best: torch.Tensor, shift: int, width: int, size: int) -> torch.Tensor:
    """Index along a dim of ``size`` from the maximal keys (its reversed position code)."""
    return (size - 1) - ((best >> shift) & ((1 << width) - 1)).long()


def _reduce(data: torch.Tensor, dims: List[int], code_bits: int, code: torch.Tensor,
            fields: List[Tuple[int, int]], exact: bool) -> List[List[torch.Tensor]]:
    """Per dim of ``dims``: the maximal keys, and for float32 also the value at their position
    and ``amax`` of the values (``fields``: the shift and width of each dim's code)."""
    step = data.shape[0]
    if 0 not in dims:
        step = max(1, _SLAB_ELEMENTS // max(1, data[:1].numel()))
    out = []
    for d in dims:
        shape = [n for i, n in enumerate(data.shape) if i != d]
        out.append([data.new_empty(shape, dtype=torch.int32)] +
                   ([] if exact else [data.new_empty(shape), data.new_empty(shape)]))
    scratch = data.new_empty((min(step, data.shape[0]), *data.shape[1:]), dtype=torch.int32)
    for i in range(0, data.shape[0], step):
        part = data[i:i + step]
        bits = (part.float() if exact else part).view(torch.int32)
        keys = _to_keys(bits, scratch[:part.shape[0]]).bitwise_and_(-(1 << code_bits))
        keys.bitwise_or_(code if code.shape[0] == 1 else code[i:i + step])
        for d, (shift, width), results in zip(dims, fields, out):
            best = results[0][i:i + step]
            torch.amax(keys, d, out=best)
            if not exact:  # while the slab is in cache
                index = _position(best, shift, width, data.shape[d]).unsqueeze(d)
                torch.gather(part, d, index, out=results[1][i:i + step].unsqueeze(d))
                torch.amax(part, d, out=results[2][i:i + step])
    return out


def first_maxima(x: torch.Tensor, dims: Sequence[int]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``[torch.max(x, d) for d in dims]``: maxima and their indices (first maximum on ties).

    Args:
        x (Tensor): float32, bfloat16 or float16 tensor on the CPU, with at least
            :data:`_MIN_INNER` elements after the last reduced dim. Others go to ``torch.max``
            (fast there: short inner runs, or a device where the checks would synchronise).
        dims (Sequence[int]): Distinct dims to reduce, each separately.

    Returns:
        list[tuple[Tensor, Tensor]]: For each dim, the maxima (dtype of ``x``) and their int64
        indices, of ``x``'s shape without that dim: equal to ``torch.max(x, d)``.
    """
    dims = [d % x.dim() for d in dims]
    compiled = [axis_first_maxima(x, d) for d in dims]
    if all(found is not None for found in compiled):
        return [_recorded(x, d, found) for d, found in zip(dims, compiled)]
    sizes = [x.shape[d] for d in dims]
    widths = [max(1, (n - 1).bit_length()) for n in sizes]
    code_bits = sum(widths)
    exact = x.dtype in _WIDENED_FREE_BITS
    data = x.detach().contiguous()
    inner = math.prod(x.shape[max(dims) + 1:])
    if (x.device.type != 'cpu' or not (exact or x.dtype == torch.float32) or x.numel() == 0
            or inner < _MIN_INNER
            or code_bits > (_WIDENED_FREE_BITS[x.dtype] if exact else _FLOAT32_CODE_BITS)
            or (exact and bool(data.sum().isnan()))):
        return [tuple(x.max(d)) for d in dims]
    shifts, offset, code = [], code_bits, None
    for d, n, width in zip(dims, sizes, widths):
        offset -= width
        shifts.append(offset)
        shape = [1] * x.dim()
        shape[d] = n
        # Reversed positions: among equal keys the first position carries the largest code.
        positions = torch.arange(n - 1, -1, -1, dtype=torch.int32, device=x.device) << offset
        code = positions.view(shape) if code is None else code | positions.view(shape)
    fields = list(zip(shifts, widths))
    reduced = _reduce(data, dims, code_bits, code, fields, exact)
    results = []
    for d, n, (shift, width), found in zip(dims, sizes, fields, reduced):
        index = _position(found[0], shift, width, n)
        if exact:
            bits = _to_keys(found[0], torch.empty_like(found[0]))
            values = bits.bitwise_and_(-(1 << _WIDENED_FREE_BITS[x.dtype]))
            values = values.view(torch.float32).to(x.dtype)
            wrong = values == 0
        else:
            values, maxima = found[1], found[2]
            wrong = (values != maxima) | (maxima == 0)
        if wrong.any():
            exact_values, exact_index = data.movedim(d, -1)[wrong].max(-1)
            index = index.masked_scatter(wrong, exact_index)
            values = values.masked_scatter(wrong, exact_values)
        results.append(_recorded(x, d, (values, index)))
    return results


def _recorded(x: torch.Tensor, d: int,
              found: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``found`` (maxima, indices); where autograd records, the maxima gathered from ``x`` at
    the indices, so that gradients flow as through ``torch.max``."""
    values, index = found
    if torch.is_grad_enabled() and x.requires_grad:
        values = x.gather(d, index.unsqueeze(d)).squeeze(d)
    return values, index
