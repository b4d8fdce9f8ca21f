"""Compiled CPU kernels, built on first use with the system C compiler. Optional: each caller
keeps a PyTorch path for machines without a compiler (or with ``MMOAML_NATIVE=0``)."""
from .aligned_pairs import aligned_pair_maxima, load_kernel
from .native import NativeUnavailable, cache_dir, load_library, native_enabled

__all__ = [
    'aligned_pair_maxima', 'load_kernel', 'NativeUnavailable', 'cache_dir', 'load_library',
    'native_enabled'
]
