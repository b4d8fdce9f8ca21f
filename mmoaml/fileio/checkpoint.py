"""Safe checkpoint loading for MMEngine on torch >= 2.6.

Problem: torch >= 2.6 loads with ``weights_only=True`` by default, and MMEngine 0.10.x's
loaders call ``torch.load`` without the argument, so resuming a run fails on the Python objects
MMEngine itself stores (``HistoryBuffer`` and numpy arrays, dtypes and scalars of the message
hub). Allow-listing those for ``weights_only`` is not enough: ``HistoryBuffer`` pickles its
statistics methods as ``getattr(HistoryBuffer, 'min')``, and allowing ``builtins.getattr``
lets a crafted file reach any attribute of any allowed object, which defeats the check. The
upstream fix (``weights_only=False``, mmengine#1670) makes every checkpoint able to run code.

Design: one function, :func:`load_checkpoint_file`, decides how every local or http(s)
checkpoint that MMEngine loads (``resume``, ``load_from``, ``init_cfg=Pretrained``,
``load_checkpoint`` in test and inference tools, ``CheckpointHook``'s publishing) is unpickled.
It is installed at ``import mmoaml`` for the local-file scheme (empty prefix) and for
``http://``/``https://`` of MMEngine's ``CheckpointLoader`` (no patch of ``torch.load``):

* By default the file is loaded by torch's weights-only unpickler with, for this call only, an
  allowlist of exactly the objects MMEngine training checkpoints hold: ``HistoryBuffer``, numpy
  ``ndarray`` reconstruction, ``dtype`` and numeric ``numpy.dtypes`` classes, numpy scalars (under
  both the numpy 1.x and 2.x module names), and in place of ``builtins.getattr`` a guarded
  function that returns only ``HistoryBuffer``'s own statistics methods and refuses anything
  else. Nothing on that list runs code chosen by the file, so a resume of a run's own
  checkpoint works with no flag, and a checkpoint of unknown origin still cannot execute code.
  Safety is decided by what the file contains, not by where it lies or which entry point asked:
  a work-dir rule would trust any file copied there, and a resume-only flag would have to be
  threaded through every tool.
* A file that needs anything else (a Lightning ``.ckpt`` with its hyper-parameter objects, a
  checkpoint with custom objects in the message hub, a crafted pickle) is refused with
  :class:`UnsafeCheckpointError`, whose message lists the globals the file references, what
  kind of file that suggests, and how to strip it to weights (:func:`strip_to_weights`,
  ``tools/model_converters/publish_model.py``) or opt in.
* Explicit opt-in for a trusted full checkpoint: ``trusted=True``, the context manager
  :func:`trusted_checkpoints`, or the environment variable ``MMOAML_TRUST_CHECKPOINT=1``
  (process-wide, for command-line tools). The file is then fully unpickled, which can run
  arbitrary code; a warning names the file.

Other MMEngine schemes (``pavi://``, ``s3://``, ``open-mmlab://``, ``torchvision://``) keep
MMEngine's loaders and torch's default ``weights_only=True``. Requires torch >= 2.5
(``torch.serialization.safe_globals``, ``get_unsafe_globals_in_checkpoint``).
"""
import contextlib
import contextvars
import logging
import os
import os.path as osp
import pickle
from typing import Any, Callable, Dict, Iterator, List, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info, get_local_rank
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader

__all__ = [
    'UnsafeCheckpointError', 'TRUST_ENV_VAR', 'load_checkpoint_file', 'trusted_checkpoints',
    'strip_to_weights'
]

#: Setting this environment variable to 1/true/yes opts in to full (code-executing) unpickling.
TRUST_ENV_VAR = 'MMOAML_TRUST_CHECKPOINT'

MapLocation = Union[None, str, torch.device, Callable, Dict[str, str]]

_trusted = contextvars.ContextVar('mmoaml_trusted_checkpoints', default=False)

# Statistics methods that HistoryBuffer registers for itself; its pickled state refers to them
# by getattr(HistoryBuffer, name).
_HISTORY_BUFFER_METHODS = frozenset(('min', 'max', 'mean', 'current'))


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs unpickling beyond weights and MMEngine's own training state."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling: HistoryBuffer's methods only."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'the checkpoint calls getattr({obj!r}, {name!r}); only getattr(HistoryBuffer, m) with '
        f'm in {sorted(_HISTORY_BUFFER_METHODS)} is allowed')


def _numpy_globals() -> List[Tuple[Any, str]]:
    """Numpy objects of pickled arrays and scalars, under their numpy 1.x and 2.x names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    entries = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
        entries.append((multiarray.scalar, f'{module}.scalar'))
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes via these classes
    if dtypes is not None:
        for char in np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?':
            cls = type(np.dtype(char))
            entries.append((cls, f'numpy.dtypes.{cls.__name__}'))
    return entries


def _mmengine_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """The allowlist for MMEngine training checkpoints (see the module docstring)."""
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'), *_numpy_globals()]


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Fully unpickle every checkpoint loaded inside this block (explicit opt-in).

    Only for files whose origin you trust: full unpickling can run arbitrary code.

    Examples:
        >>> from mmoaml.fileio import trusted_checkpoints
        >>> with trusted_checkpoints():
        ...     runner.test()  # doctest: +SKIP
    """
    token = _trusted.set(True)
    try:
        yield
    finally:
        _trusted.reset(token)


def _trust_requested(trusted: bool) -> bool:
    env = os.environ.get(TRUST_ENV_VAR, '').strip().lower() in ('1', 'true', 'yes')
    return trusted or _trusted.get() or env


def _scan_globals(filename: str) -> List[str]:
    """Globals the file references beyond the currently allowed ones (static scan)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    except Exception:  # legacy (non-zip) files cannot be scanned; the caller keeps the reason
        return []


def _describe_refusal(filename: str, refused: List[str], referenced: List[str],
                      reason: str) -> str:
    """Error text: what the file references, what kind of file that suggests, what to do.

    ``refused`` are the globals beyond mmoaml's allowlist, ``referenced`` all globals beyond
    torch's defaults (so it also shows MMEngine's own objects, which are allowed).
    """
    names = ', '.join(refused) if refused else f'(none found statically; unpickler said: {reason})'
    if any(n.startswith(('pytorch_lightning.', 'lightning.')) for n in referenced):
        kind = 'It looks like a PyTorch Lightning checkpoint (hyper-parameters, callbacks).'
    elif any(n.startswith('mmengine.') for n in referenced):
        kind = ('It looks like a full MMEngine training checkpoint (optimizer, schedulers, '
                'message hub) holding objects beyond what MMEngine itself stores.')
    elif refused:
        kind = 'It holds Python objects besides tensors and plain containers.'
    else:
        kind = 'It uses allowed globals in a way weights-only loading refuses.'
    return (f'Refusing to unpickle checkpoint "{filename}": weights-only loading does not allow '
            f'the globals it references: {names}. {kind} If you trust where the file came from, '
            f'strip it to weights once and load the stripped file: '
            f'`{TRUST_ENV_VAR}=1 python tools/model_converters/publish_model.py IN OUT` '
            f'(or mmoaml.fileio.strip_to_weights(IN, OUT, trusted=True)); or opt in to a full '
            f'load for this run with {TRUST_ENV_VAR}=1, `with mmoaml.fileio.trusted_checkpoints():`'
            f' or trusted=True. Never opt in for a file of unknown origin: full unpickling can '
            f'run arbitrary code.')


def load_checkpoint_file(filename: str,
                         map_location: MapLocation = None,
                         trusted: bool = False) -> Any:
    """Load a checkpoint file: weights-only plus MMEngine's own state, or fully if trusted.

    The one place where mmoaml decides how a checkpoint is unpickled (see the module docstring).

    Args:
        filename (str): Path of a file written by ``torch.save``.
        map_location: As for :func:`torch.load`. Defaults to None.
        trusted (bool): Fully unpickle the file (can run code). Also enabled by
            :func:`trusted_checkpoints` and ``MMOAML_TRUST_CHECKPOINT=1``. Defaults to False.

    Returns:
        The unpickled object (for checkpoints, a dict).

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        RuntimeError: The file is not a readable ``torch.save`` file (truncated, corrupt).
        UnsafeCheckpointError: The file needs globals beyond the allowlist and trust was not
            given; the message says which, and how to strip or opt in.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint "{filename}" can not be found')
    if _trust_requested(trusted):
        print_log(
            f'Fully unpickling the trusted checkpoint "{filename}" (weights_only=False).',
            logger='current',
            level=logging.WARNING)
        return torch.load(filename, map_location=map_location, weights_only=False)
    if not hasattr(torch.serialization, 'safe_globals'):
        raise RuntimeError('mmoaml needs torch >= 2.5 to load checkpoints safely '
                           f'(found {torch.__version__}); opt in with {TRUST_ENV_VAR}=1 only '
                           'for trusted files')
    with torch.serialization.safe_globals(_mmengine_globals()):
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            failure = err
        except (RuntimeError, EOFError) as err:  # torch's messages do not name the file
            raise RuntimeError(f'could not read checkpoint "{filename}": {err}') from err
        refused = _scan_globals(filename)
    referenced = _scan_globals(filename)
    raise UnsafeCheckpointError(
        _describe_refusal(filename, refused, referenced, str(failure))) from failure


def load_from_local_safe(filename: str, map_location: MapLocation = None) -> Any:
    """``CheckpointLoader`` scheme for local paths (replaces MMEngine's ``load_from_local``)."""
    return load_checkpoint_file(filename, map_location)


def load_from_http_safe(filename: str, map_location: MapLocation = None) -> Any:
    """``CheckpointLoader`` scheme for http(s) URLs (replaces MMEngine's ``load_from_http``).

    Downloads once per machine into ``<torch hub dir>/checkpoints`` (local rank 0 first, like
    ``torch.hub.load_state_dict_from_url``), then loads through :func:`load_checkpoint_file`.
    MMEngine's own loader goes through ``torch.hub`` whose ``weights_only`` defaults to False.
    """
    model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))
    _, world_size = get_dist_info()
    if get_local_rank() == 0 and not osp.isfile(cached):
        os.makedirs(model_dir, exist_ok=True)
        print_log(f'Downloading "{filename}" to {cached}', logger='current')
        torch.hub.download_url_to_file(filename, cached, progress=False)
    if world_size > 1:
        barrier()
    return load_checkpoint_file(cached, map_location)


def _plain(value: Any) -> Tuple[bool, Any]:
    """Return ``(ok, value)`` with numpy values turned into Python ones; ok=False if not plain."""
    if isinstance(value, np.generic):
        return True, value.item()
    if isinstance(value, np.ndarray):
        return value.dtype != object, value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor)):
        return True, value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return all(ok for ok, _ in items), type(value)(v for _, v in items)
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items()}
        ok = all(ok for ok, _ in items.values()) and all(
            isinstance(k, (str, int)) for k in items)
        return ok, {k: v for k, (_, v) in items.items()}
    return False, value


def strip_to_weights(src: str, dst: str, trusted: bool = False) -> Dict[str, Any]:
    """Write a weights-only copy of a checkpoint: ``{'meta': ..., 'state_dict': ...}``.

    Drops the optimizer, scheduler and message-hub state, turns numpy values in ``meta`` into
    Python ones and drops ``meta`` entries that are not plain data (logged), so the result loads
    with plain ``torch.load`` defaults (``weights_only=True``) in any environment.

    Args:
        src (str): Input checkpoint (a dict with ``state_dict``).
        dst (str): Output path.
        trusted (bool): Fully unpickle ``src`` if it needs more than the safe allowlist (see
            :func:`load_checkpoint_file`). Defaults to False.

    Returns:
        dict: The stripped checkpoint that was written.

    Raises:
        ValueError: ``src`` is not a dict with a ``state_dict`` of tensors.
    """
    checkpoint = load_checkpoint_file(src, map_location='cpu', trusted=trusted)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint)
        raise ValueError(f'{src} has no "state_dict" dict; found {found}')
    state_dict = checkpoint['state_dict']
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f'{src}: state_dict entries that are not tensors: {not_tensors[:5]}')
    meta: Dict[str, Any] = {}
    dropped = []
    for key, value in (checkpoint.get('meta') or {}).items():
        ok, plain = _plain(value)
        if ok:
            meta[key] = plain
        else:
            dropped.append(key)
    if dropped:
        print_log(f'strip_to_weights: dropped meta entries that are not plain data: {dropped}',
                  logger='current', level=logging.WARNING)
    stripped = {'meta': meta, 'state_dict': state_dict}
    dst_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(dst_dir, exist_ok=True)
    torch.save(stripped, dst)
    torch.load(dst, map_location='cpu', weights_only=True)  # the guarantee this function gives
    return stripped


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
CheckpointLoader.register_scheme(
    prefixes=('http://', 'https://'), loader=load_from_http_safe, force=True)

