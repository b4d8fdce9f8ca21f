"""QAConv maxima of aligned pairs on the CPU, through the compiled kernel ``aligned_pairs.c``.

``QAConvHead.match_pairs`` calls :func:`aligned_pair_maxima` in eval mode on the CPU; it
returns None where the kernel cannot be built (no C compiler: see :mod:`mmoaml.ops.native`,
which also says where the library is cached) or is switched off (``MMOAML_NATIVE=0``), and the
head then takes its PyTorch path. The pairs are split into one contiguous share per
``torch.get_num_threads()`` thread (the kernel call releases the GIL).
"""
import ctypes
from pathlib import Path
from typing import Optional, Tuple

import torch

from .native import load_function, native_enabled, split_over_threads

SOURCE = Path(__file__).with_name('aligned_pairs.c')
SYMBOL = 'mmoaml_aligned_pair_maxima'
_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64
#: (probe, gallery, n, channels, hw, bf16, hidden_p, hidden_g, hidden_value, max_p, arg_p,
#: max_g, arg_g) -> 0, or -1 when out of memory
ARGTYPES = (_PTR, _PTR, _I64, _I64, _I64, ctypes.c_int, _PTR, _PTR, ctypes.c_float, _PTR, _PTR,
            _PTR, _PTR)
_MIN_PAIRS_PER_THREAD = 8  # below this a thread's start costs more than its share


def load_kernel():
    """The kernel's C function (built on first use), or None where it is unavailable."""
    return load_function(SOURCE, SYMBOL, ARGTYPES, ctypes.c_int)


def aligned_pair_maxima(
        probe: torch.Tensor, gallery: torch.Tensor, bf16: bool,
        hidden_probe: Optional[torch.Tensor], hidden_gallery: Optional[torch.Tensor],
        hidden_value: float) -> Optional[Tuple[torch.Tensor, ...]]:
    """Both directions' maxima of every aligned pair's normalised correlations.

    ``S[r, s]`` of pair ``k`` is the cosine between ``probe[k, :, r]`` and
    ``gallery[k, :, s]`` (norms clamped at 1e-12), and ``hidden_value`` wherever ``r`` or ``s``
    is hidden.

    Args:
        probe (Tensor): ``[N, C, hw]`` CPU maps (any float dtype, read as float32).
        gallery (Tensor): ``[N, C, hw]``.
        bf16 (bool): Round the maps to bfloat16 for the products (summed in float32; the norms
            stay float32).
        hidden_probe (Tensor, optional): bool ``[N, hw]``, True = hidden probe location.
        hidden_gallery (Tensor, optional): bool ``[N, hw]``, the same for the gallery.
        hidden_value (float): Correlation of a hidden location.

    Returns:
        tuple[Tensor, ...] | None: ``(max_p, arg_p, max_g, arg_g)``: ``max_p`` float32
        ``[N, hw]`` the maximum over the gallery locations per probe location and ``arg_p``
        int64 its first index; ``max_g``/``arg_g`` per gallery location. ``torch.max``'s values
        and indices (a NaN is the maximum, the first one). None where the kernel is
        unavailable.
    """
    if not native_enabled():
        return None
    kernel = load_kernel()
    if kernel is None:
        return None
    n, channels, hw = probe.shape
    maps = [x.detach().float().contiguous() for x in (probe, gallery)]
    masks = [None if m is None else m.to(torch.uint8).contiguous()
             for m in (hidden_probe, hidden_gallery)]
    outputs = [torch.empty(n, hw, dtype=dtype) for dtype in (torch.float32, torch.int64) * 2]

    def run(start: int, stop: int) -> int:
        def at(t: Optional[torch.Tensor]) -> Optional[int]:
            return None if t is None else t.data_ptr() + start * t.stride(0) * t.element_size()

        return kernel(at(maps[0]), at(maps[1]), stop - start, channels, hw, int(bf16),
                      at(masks[0]), at(masks[1]), hidden_value, *(at(t) for t in outputs))

    if any(split_over_threads(n, run, _MIN_PAIRS_PER_THREAD)):
        raise MemoryError('mmoaml aligned-pair kernel: cannot allocate its scratch memory')
    return tuple(outputs)
