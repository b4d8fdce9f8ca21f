"""Build a C source shipped with mmoaml into a shared library, once per machine, and load it.

The library is compiled with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) with :data:`FLAGS` (optimised for this machine's CPU, multiply-adds fused; ISO C11
mode would keep them apart, at half the float32 speed) and cached under ``$MMOAML_CACHE`` (default
``$XDG_CACHE_HOME/mmoaml``, i.e. ``~/.cache/mmoaml``), in a file named after the hash of the
source, the compiler, the flags and the CPU, so that an edited source, another compiler or
another machine sharing the cache builds its own copy. Builds write a temporary file and rename
it, so concurrent processes (DDP ranks) never load a half-written library. A library found in
the cache is loaded as it is: keep the cache where only you can write.

``MMOAML_NATIVE=0`` switches every compiled path off (the PyTorch paths run instead);
:func:`native_enabled` reads it at each call. :func:`load_function` gives a typed C function,
or None with one warning where its library cannot be built; :func:`split_over_threads` runs a
kernel over ``torch.get_num_threads()`` shares of its work (a ctypes call releases the GIL).
"""
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

FLAGS = ('-O3', '-march=native', '-std=gnu11', '-ffp-contract=fast', '-shared', '-fPIC')
_COMPILERS = ('cc', 'gcc', 'clang')
_BUILD_TIMEOUT_S = 120


class NativeUnavailable(RuntimeError):
    """The library cannot be built or loaded here; the message says why."""


def native_enabled() -> bool:
    """False when the environment sets ``MMOAML_NATIVE=0``."""
    return os.environ.get('MMOAML_NATIVE', '1') != '0'


def cache_dir() -> Path:
    """Where built libraries are kept."""
    root = os.environ.get('MMOAML_CACHE')
    if not root:
        base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
        root = os.path.join(base, 'mmoaml')
    return Path(root) / 'native'


def find_compiler() -> str:
    """Path of the C compiler, or raise :class:`NativeUnavailable`."""
    names = [os.environ['CC']] if os.environ.get('CC') else list(_COMPILERS)
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise NativeUnavailable(f'no C compiler found (tried {", ".join(names)}; set CC)')


def _cpu_tag() -> str:
    """The CPU's feature flags where the OS lists them, else the platform's processor name."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith(('flags', 'Features')):
                    return line
    except OSError:
        pass
    return platform.processor()


def _library_path(source: Path, compiler: str, flags: Sequence[str]) -> Path:
    code = source.read_bytes()
    try:
        version = subprocess.run([compiler, '--version'], capture_output=True, text=True,
                                 timeout=_BUILD_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise NativeUnavailable(f'{compiler} --version failed: {err}') from err
    key = hashlib.sha256(b'\0'.join(
        part.encode() if isinstance(part, str) else part
        for part in (code, compiler, version, ' '.join(flags), platform.machine(), _cpu_tag()))
    ).hexdigest()[:20]
    return cache_dir() / f'{source.stem}-{key}.so'


def load_library(source: Path, flags: Sequence[str] = FLAGS) -> ctypes.CDLL:
    """Load the library built from ``source`` (a ``.c`` file) with the compiler ``flags``,
    building it first if needed.

    Raises:
        NativeUnavailable: no compiler, the build failed, or the library does not load.
    """
    compiler = find_compiler()
    path = _library_path(source, compiler, flags)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix='.so', dir=path.parent)
            os.close(fd)
        except OSError as err:
            raise NativeUnavailable(f'cannot write to {path.parent}: {err}') from err
        try:
            done = subprocess.run([compiler, *flags, '-o', tmp, str(source), '-lm'],
                                  capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
            if done.returncode:
                raise NativeUnavailable(f'{compiler} failed on {source.name}: '
                                        f'{done.stderr.strip()[-2000:]}')
            os.replace(tmp, path)
        except (OSError, subprocess.SubprocessError) as err:
            raise NativeUnavailable(f'building {source.name} failed: {err}') from err
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    try:
        return ctypes.CDLL(str(path))
    except OSError as err:
        raise NativeUnavailable(f'cannot load {path}: {err}') from err


def bind(library: ctypes.CDLL, symbol: str, argtypes: Tuple, restype) -> Callable:
    """``library.symbol`` with its argument and result types."""
    fn = getattr(library, symbol)
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


@functools.lru_cache(maxsize=None)
def load_function(source: Path, symbol: str, argtypes: Tuple, restype) -> Optional[Callable]:
    """:func:`bind` of the library built from ``source``; None, with one warning, where it
    cannot be built or loaded here. ``load_function.cache_clear()`` makes the next call try
    again."""
    try:
        return bind(load_library(source), symbol, argtypes, restype)
    except NativeUnavailable as err:
        warnings.warn(f'mmoaml: the compiled kernel {source.name} is unavailable ({err}); its '
                      'caller uses its PyTorch path (slower on the CPU)')
        return None


@functools.lru_cache(maxsize=1)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, 'mmoaml-native')


# A forked child inherits the pool object but not its threads: it would wait on them forever.
if hasattr(os, 'register_at_fork'):  # POSIX; elsewhere nothing forks
    os.register_at_fork(after_in_child=_pool.cache_clear)


def split_over_threads(n: int, run: Callable[[int, int], int], min_share: int) -> List[int]:
    """``run(start, stop)`` over contiguous shares of ``range(n)``, one per
    ``torch.get_num_threads()`` thread (fewer where a share would hold under ``min_share``
    items); the results in order."""
    workers = max(1, min(torch.get_num_threads(), n // max(1, min_share)))
    if workers == 1:
        return [run(0, n)]
    bounds = [n * i // workers for i in range(workers + 1)]
    return list(_pool(workers).map(run, bounds[:-1], bounds[1:]))
