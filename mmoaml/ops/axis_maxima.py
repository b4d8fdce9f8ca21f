"""``torch.max(x, dim)`` on the CPU through the compiled kernel ``axis_maxima.c``: one pass,
vectorised across the contiguous axes after ``dim`` (PyTorch's indexed reduction over a middle
axis goes one element at a time).

:func:`mmoaml.models.first_maxima.first_maxima` calls :func:`axis_first_maxima` first; None
(no C compiler, ``MMOAML_NATIVE=0``, another device or dtype) sends it to its PyTorch path.
"""
import ctypes
import math
from pathlib import Path
from typing import Optional, Tuple

import torch

from .native import load_function, native_enabled, split_over_threads

SOURCE = Path(__file__).with_name('axis_maxima.c')
SYMBOL = 'mmoaml_axis_first_maxima'
#: (x, bf16, outer, n, inner, values, indices)
ARGTYPES = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p, ctypes.c_void_p)
_DTYPES = (torch.float32, torch.bfloat16)
_MIN_ROWS_PER_THREAD = 64 * 1024  # values per thread share, at least


def load_kernel():
    """The kernel's C function (built on first use), or None where it is unavailable."""
    return load_function(SOURCE, SYMBOL, ARGTYPES, None)


def axis_first_maxima(x: torch.Tensor, dim: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``torch.max(x, dim)``: the maxima (dtype of ``x``) and their first int64 indices, a NaN
    being the maximum (the first one); None where the kernel does not apply.

    Args:
        x (Tensor): float32 or bfloat16 CPU tensor (read contiguous; no gradient is recorded).
        dim (int): The reduced dim; it must not be empty.
    """
    if (not native_enabled() or x.device.type != 'cpu' or x.dtype not in _DTYPES
            or x.numel() == 0):
        return None
    kernel = load_kernel()
    if kernel is None:
        return None
    dim = dim % x.dim()
    data = x.detach().contiguous()
    outer, n = math.prod(x.shape[:dim]), x.shape[dim]
    inner = math.prod(x.shape[dim + 1:])
    shape = x.shape[:dim] + x.shape[dim + 1:]
    values = torch.empty(shape, dtype=torch.float32)
    indices = torch.empty(shape, dtype=torch.int64)
    bf16 = int(x.dtype == torch.bfloat16)

    def run(start: int, stop: int) -> None:
        kernel(data.data_ptr() + start * n * inner * data.element_size(), bf16, stop - start, n,
               inner, values.data_ptr() + start * inner * 4, indices.data_ptr() + start * inner * 8)

    split_over_threads(outer, run, max(1, _MIN_ROWS_PER_THREAD // max(1, n * inner)))
    return values.to(x.dtype), indices
