"""Compiled CPU kernels, built on first use with the system C compiler. Optional: each caller
keeps a PyTorch path for machines without a compiler (or with ``MMOAML_NATIVE=0``)."""
from .aligned_pairs import aligned_pair_maxima
from .axis_maxima import axis_first_maxima
from .native import NativeUnavailable, cache_dir, load_function, load_library, native_enabled

__all__ = [
    'aligned_pair_maxima', 'axis_first_maxima', 'NativeUnavailable', 'cache_dir',
    'load_function', 'load_library', 'native_enabled'
]
