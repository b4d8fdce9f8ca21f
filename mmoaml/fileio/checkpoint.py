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

Where it applies: :func:`install_safe_checkpoint_loader` registers it for the local-file scheme
(empty prefix) and for ``http://``/``https://`` of MMEngine's ``CheckpointLoader`` (no patch of
``torch.load``). Importing mmoaml installs nothing, so a host project that imports mmoaml's
models keeps MMEngine's loaders. mmoaml's entry points install it: ``register_all_modules()``
(``mmoaml.utils``), hence ``tools/train.py`` and ``tools/test.py``, which also call the installer
themselves; the model converters read their input through :func:`load_checkpoint_file`
directly. The installation is process-wide and idempotent. Once installed:

* A file that is neither a zip-format ``torch.save`` file nor a legacy torch pickle (a text,
  JSON or image file, an ``.npz``, random bytes) is refused as :class:`NotACheckpointError`
  naming the file, before any unpickling; so is a checkpoint that holds no ``state_dict``
  (a list, an empty dict, a dict of other things) when loaded through ``CheckpointLoader``.
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

Loading into a model: :func:`load_model_state` checks a loaded checkpoint against the model
before copying it (``tools/test.py`` loads through it): missing, unexpected or mis-shaped keys
are an error listing them (with a hint when the keys are an AdaFace or insightface layout that
needs converting), unless ``strict=False``; NaN/inf weights are always an error naming them.

Other MMEngine schemes (``pavi://``, ``s3://``, ``open-mmlab://``, ``torchvision://``) keep
MMEngine's loaders and torch's default ``weights_only=True``. Requires torch >= 2.5
(``torch.serialization.safe_globals``, ``get_unsafe_globals_in_checkpoint``).
"""
import codecs
import contextlib
import contextvars
import logging
import os
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info, get_local_rank
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import CheckpointLoader

__all__ = [
    'UnsafeCheckpointError', 'NotACheckpointError', 'TRUST_ENV_VAR',
    'load_checkpoint_file', 'trusted_checkpoints', 'strip_to_weights',
    'install_safe_checkpoint_loader', 'checkpoint_state_dict'
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


class NotACheckpointError(RuntimeError):
    """The file is not a ``torch.save`` file, or what it holds has no ``state_dict``."""


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


# Legacy (non-zip) torch.save files start with this number, pickled.
_LEGACY_MAGIC = torch.serialization.MAGIC_NUMBER.to_bytes(10, 'little')
_ZIP_MAGIC = b'PK\x03\x04'
_IMAGE_MAGICS = ((b'\x89PNG', 'a PNG image'), (b'\xff\xd8\xff', 'a JPEG image'),
                 (b'GIF8', 'a GIF image'), (b'BM', 'a BMP image'))


def _not_torch_file(filename: str) -> Optional[str]:
    """What the file is when it cannot be a ``torch.save`` file, else None.

    Only the first bytes are read (and a zip's directory): a zip-format file must hold a
    ``data.pkl`` record, a legacy one starts with torch's pickled magic number. A zip that
    cannot be opened (e.g. truncated) is left to ``torch.load``, which reports it as corrupt.
    """
    with open(filename, 'rb') as f:
        head = f.read(64)
    if not head:
        return 'an empty file'
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(filename) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None
        if any(name == 'data.pkl' or name.endswith('/data.pkl') for name in names):
            return None
        return f'a zip archive without data.pkl (e.g. an .npz; entries: {names[:5]})'
    if head.startswith(b'\x80') and _LEGACY_MAGIC in head:
        return None
    for magic, kind in _IMAGE_MAGICS:
        if head.startswith(magic):
            return kind
    try:  # incremental: a multi-byte character cut at byte 64 is not an error
        text = codecs.getincrementaldecoder('utf-8')().decode(head)
    except UnicodeDecodeError:
        text = ''
    if text and all(c.isprintable() or c.isspace() for c in text):
        return 'JSON' if text.lstrip()[:1] in ('{', '[') else 'text'
    return f'binary data of an unknown format (first bytes {head[:8]!r})'


def _refuse_non_torch_file(filename: str) -> None:
    kind = _not_torch_file(filename)
    if kind is not None:
        raise NotACheckpointError(
            f'"{filename}" is not a checkpoint: it is {kind}, not a torch.save file (neither the '
            'zip format nor a legacy torch pickle); check the path')


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
        NotACheckpointError: The file is not a ``torch.save`` file at all (text, image, ...).
        RuntimeError: The file is not a readable ``torch.save`` file (truncated, corrupt).
        UnsafeCheckpointError: The file needs globals beyond the allowlist and trust was not
            given; the message says which, and how to strip or opt in.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint "{filename}" can not be found')
    _refuse_non_torch_file(filename)
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


def checkpoint_state_dict(checkpoint: Any, filename: str) -> Mapping[str, Any]:
    """The weights of a loaded checkpoint, or an error naming ``filename``.

    Accepts what MMEngine loads into a model: a dict with a non-empty ``state_dict`` dict, or a
    bare non-empty dict of tensors.

    Raises:
        NotACheckpointError: ``checkpoint`` is not a dict, its ``state_dict`` is not a dict or
            is empty, or it has no ``state_dict`` and is not a dict of tensors.
    """
    if not isinstance(checkpoint, Mapping):
        raise NotACheckpointError(f'checkpoint "{filename}" holds a {type(checkpoint).__name__}, '
                                  'not a dict with a "state_dict"')
    if 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
        if not isinstance(state_dict, Mapping):
            raise NotACheckpointError(f'checkpoint "{filename}": "state_dict" is a '
                                      f'{type(state_dict).__name__}, not a dict of weights')
        if not state_dict:
            raise NotACheckpointError(f'checkpoint "{filename}" holds an empty "state_dict" '
                                      '(no weights)')
        return state_dict
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint  # a bare state dict, which MMEngine loads as it is
    keys = [str(k) for k in checkpoint][:10]
    raise NotACheckpointError(f'checkpoint "{filename}" has no "state_dict" and is not a dict of '
                              f'tensors; its {len(checkpoint)} top-level keys: {keys}')


def load_from_local_safe(filename: str, map_location: MapLocation = None) -> Any:
    """``CheckpointLoader`` scheme for local paths (replaces MMEngine's ``load_from_local``)."""
    checkpoint = load_checkpoint_file(filename, map_location)
    checkpoint_state_dict(checkpoint, filename)
    return checkpoint


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
    checkpoint = load_checkpoint_file(cached, map_location)
    checkpoint_state_dict(checkpoint, f'{filename} ({cached})')
    return checkpoint


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


def install_safe_checkpoint_loader() -> None:
    """Load local and http(s) checkpoints of MMEngine's ``CheckpointLoader`` through mmoaml.

    Process-wide and idempotent; mmoaml's entry points call it (see the module docstring).
    """
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_from_http_safe, force=True)
