"""Feature dumps: a verification set's per-image features and QAConv matcher in a safe ``.npz``.

``tools/test.py --dump DIR`` writes one ``<set>.npz`` per verification set through the
``DumpFaceFeatures`` metric (:func:`save_face_features`), and records the online metrics in
``DIR/metrics.json`` (:data:`DUMP_METRICS_FILE`); ``tools/analysis_tools/eval_features.py``
reads them back (:func:`load_face_features`) and re-scores them offline.

File layout (NumPy ``.npz``, no object arrays: it loads with ``allow_pickle=False``, so a crafted
file cannot run code), for ``2N`` images in ``sample_idx`` order:

- ``sample_idx`` int64 ``[2N]``, ``issame`` bool ``[N]`` (pair ``k`` = images ``2k, 2k+1``),
  ``pair_idx`` int64 ``[2N]`` when every image carries it;
- ``embedding`` float32 ``[2N, D]``; ``feature_map`` float16 ``[2N, C, h, w]``; ``visibility``
  float32 ``[2N, 1, h, w]`` (predicted); ``gt_visibility`` float32 ``[2N, 1, h, w]`` (ground
  truth on the map grid); each only when the images carry it;
- ``qaconv_head.<name>``: the QAConv matcher's state dict, when one is recorded;
- ``meta``: a JSON string with ``format`` (:data:`DUMP_FORMAT`), ``set_name``, ``metric_cfg``
  (the set's ``FaceVerificationMetric`` arguments) and ``matcher_cfg`` (the matcher's
  constructor arguments, or null).
"""
import json
import os
import os.path as osp
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmoaml.registry import MODELS
from mmoaml.structures import EMBEDDING, FEATURE_MAP, GT_VISIBILITY, VISIBILITY
from .npz import open_npz

#: Version of the ``.npz`` layout written by :func:`save_face_features`.
DUMP_FORMAT = 1
#: File next to the dumps where ``tools/test.py`` records the online metrics and set order.
DUMP_METRICS_FILE = 'metrics.json'
# Per-image fields and their stored dtypes (the metrics' own in-memory precision).
_IMAGE_FIELDS = ((EMBEDDING, np.float32), (FEATURE_MAP, np.float16), (VISIBILITY, np.float32),
                 (GT_VISIBILITY, np.float32))
_MATCHER_PREFIX = 'qaconv_head.'


class FaceFeatureDump(NamedTuple):
    """One set's dump, as read back by :func:`load_face_features`.

    Attributes:
        set_name (str): The set's name (``<set>`` of the metric keys).
        entries (list[dict]): One entry per image in ``sample_idx`` order, exactly as
            ``FaceVerificationMetric.process`` stores them (``sample_idx``, ``issame``,
            ``pair_idx`` and the dumped tensors; no ``visibility`` when the model predicts
            none).
        metric_cfg (dict): Keyword arguments of the set's ``FaceVerificationMetric``.
        matcher_cfg (dict, optional): Config of the recorded QAConv matcher (None: none).
        matcher_state (dict, optional): Its state dict (CPU tensors).
    """
    set_name: str
    entries: List[dict]
    metric_cfg: Dict[str, Any]
    matcher_cfg: Optional[Dict[str, Any]]
    matcher_state: Optional[Dict[str, torch.Tensor]]

    def build_matcher(self) -> Optional[nn.Module]:
        """The dumped QAConv matcher with its weights, in eval mode (None if none was bound)."""
        if self.matcher_cfg is None:
            return None
        matcher = MODELS.build(dict(self.matcher_cfg, _scope_='mmoaml'))
        matcher.load_state_dict(self.matcher_state, strict=True)
        return matcher.eval()

    def servable_score_types(self) -> set:
        """Score types computable from the stored fields (and matcher)."""
        stored = set(self.entries[0]) if self.entries else set()
        servable = set()
        if EMBEDDING in stored:
            servable.add('adaface')
        if FEATURE_MAP in stored and self.matcher_cfg is not None:
            servable |= {'qaconv', 'qaconv_none'}
            if GT_VISIBILITY in stored:
                servable.add('qaconv_gt')
        if {'adaface', 'qaconv'} <= servable:
            servable.add('combined')
        return servable


def save_face_features(path: str,
                       set_name: str,
                       entries: Sequence[dict],
                       issame: np.ndarray,
                       metric_cfg: Mapping[str, Any],
                       matcher: Optional[nn.Module] = None) -> None:
    """Write one set's dump (the layout of this module's docstring) to ``path``.

    The file appears complete or not at all: it is written under a temporary name and then
    renamed. Arrays are built one at a time, so at most one stacked copy of a field exists
    besides the entries.

    Args:
        path (str): The ``<set>.npz`` file to write (its folder must exist).
        set_name (str): The set's name, recorded in the meta.
        entries (Sequence[dict]): ``2N`` distinct entries in ``sample_idx`` order, as
            ``FaceVerificationMetric`` stores them: ``sample_idx``, ``pair_idx`` (None or int)
            and CPU tensors ``embedding [D]``, ``feature_map [C, h, w]``, ``visibility`` and
            ``gt_visibility`` ``[1, h, w]``. Each tensor field must be given (not None) for
            every entry or for none; fields absent or None are not written.
        issame (np.ndarray): bool ``[N]`` pair labels.
        metric_cfg (Mapping[str, Any]): JSON-serialisable ``FaceVerificationMetric``
            arguments of the set.
        matcher (nn.Module, optional): The ``QAConvHead`` to record with its weights.
            Defaults to None (no matcher: the dump serves no QAConv score offline).
    """
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, array in _arrays(set_name, entries, issame, metric_cfg, matcher):
                with archive.open(f'{key}.npy', 'w', force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _arrays(set_name: str, entries: Sequence[dict], issame: np.ndarray,
            metric_cfg: Mapping[str, Any],
            matcher: Optional[nn.Module]) -> Iterator[Tuple[str, np.ndarray]]:
    """The file's arrays, built one at a time (only one full copy exists at once)."""
    matcher_cfg = None if matcher is None else _matcher_cfg(matcher)
    meta = dict(format=DUMP_FORMAT, set_name=set_name, metric_cfg=dict(metric_cfg),
                matcher_cfg=matcher_cfg)
    yield 'meta', np.array(json.dumps(meta))
    yield 'sample_idx', np.array([e['sample_idx'] for e in entries], dtype=np.int64)
    yield 'issame', np.asarray(issame, dtype=bool)
    if all(e['pair_idx'] is not None for e in entries):
        yield 'pair_idx', np.array([e['pair_idx'] for e in entries], dtype=np.int64)
    for key, dtype in _IMAGE_FIELDS:
        if entries[0].get(key) is not None:
            yield key, torch.stack([e[key] for e in entries]).numpy().astype(dtype, copy=False)
    if matcher is not None:
        for key, value in matcher.state_dict().items():
            yield _MATCHER_PREFIX + key, value.detach().cpu().numpy()


def _matcher_cfg(matcher: nn.Module) -> Dict[str, Any]:
    """Constructor arguments of a ``QAConvHead`` (the only matcher the metrics score with)."""
    try:
        return dict(type=type(matcher).__name__, num_features=int(matcher.num_features),
                    height=int(matcher.height), width=int(matcher.width),
                    weighting=str(matcher.weighting))
    except AttributeError as error:
        raise TypeError(f'save_face_features: cannot record the matcher '
                        f'{type(matcher).__name__}; expected a QAConvHead (num_features, '
                        'height, width, weighting)') from error


def load_face_features(path: str) -> FaceFeatureDump:
    """Read a file written by :func:`save_face_features` (no pickle: a crafted file cannot run
    code).

    Args:
        path (str): The ``<set>.npz`` file.

    Returns:
        FaceFeatureDump: The set's entries, metric config and matcher.
    """
    path = str(path)
    with open_npz(path, 'feature dump') as data:
        arrays = {key: data[key] for key in data.files}
    for key in ('meta', 'sample_idx', 'issame'):
        if key not in arrays:
            raise ValueError(f'{path}: not a feature dump (no "{key}" array)')
    try:
        meta = json.loads(str(arrays.pop('meta')))
    except ValueError as error:
        raise ValueError(f'{path}: unreadable "meta" ({error})') from error
    if meta.get('format') != DUMP_FORMAT:
        raise ValueError(f'{path}: dump format {meta.get("format")!r}, this version reads '
                         f'{DUMP_FORMAT}')
    matcher_state = {
        key[len(_MATCHER_PREFIX):]: torch.from_numpy(arrays.pop(key))
        for key in list(arrays) if key.startswith(_MATCHER_PREFIX)
    }
    return FaceFeatureDump(
        set_name=str(meta['set_name']),
        entries=_entries(path, arrays),
        metric_cfg=dict(meta['metric_cfg']),
        matcher_cfg=meta['matcher_cfg'],
        matcher_state=matcher_state if meta['matcher_cfg'] is not None else None)


def _entries(path: str, arrays: Dict[str, np.ndarray]) -> List[dict]:
    """Per-image entries from the stacked arrays, checking their lengths."""
    sample_idx, issame = arrays['sample_idx'], arrays['issame']
    num_images = len(sample_idx)
    if issame.dtype != np.bool_ or issame.shape != (num_images // 2, ):
        raise ValueError(f'{path}: issame must be bool [{num_images // 2}] for {num_images} '
                         f'images, got {issame.dtype} {issame.shape}')
    fields = {}
    for key, dtype in _IMAGE_FIELDS + (('pair_idx', np.int64), ):
        if key not in arrays:
            continue
        array = arrays[key]
        if len(array) != num_images or array.dtype != dtype:
            raise ValueError(f'{path}: "{key}" must be {np.dtype(dtype).name} with '
                             f'{num_images} rows, got {array.dtype} {array.shape}')
        fields[key] = array if key == 'pair_idx' else torch.from_numpy(array)
    entries = []
    for i, index in enumerate(sample_idx.tolist()):
        pair_idx = fields.get('pair_idx')
        entry = dict(sample_idx=index, issame=bool(issame[index // 2]),
                     pair_idx=None if pair_idx is None else int(pair_idx[i]))
        for key, _ in _IMAGE_FIELDS:
            if key in fields:
                entry[key] = fields[key][i]
        entries.append(entry)
    return entries
