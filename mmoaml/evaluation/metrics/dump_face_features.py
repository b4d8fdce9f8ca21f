"""Per-image features of a verification set written to a safe ``.npz``, and scored offline."""
import json
import os
import os.path as osp
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log

from mmoaml.registry import METRICS, MODELS
from .face_verification import (SCORE_TYPES, FaceVerificationMetric, _all_or_none, _pair_labels,
                                _unique_by_index)

__all__ = ['DumpFaceFeatures', 'FaceFeatureDump', 'load_face_features', 'score_face_features']

#: Version of the ``.npz`` layout written by :class:`DumpFaceFeatures`.
DUMP_FORMAT = 1
#: File next to the dumps where ``tools/test.py`` records the online metrics and set order.
DUMP_METRICS_FILE = 'metrics.json'
# Per-image fields and their stored dtypes (the metric's own in-memory precision).
_IMAGE_FIELDS = (('embedding', np.float32), ('feature_map', np.float16),
                 ('visibility', np.float32), ('gt_visibility', np.float32))
_MATCHER_PREFIX = 'qaconv_head.'


class FaceFeatureDump(NamedTuple):
    """One set's dump, as read back by :func:`load_face_features`.

    Attributes:
        set_name (str): The set's name (``<set>`` of the metric keys).
        entries (list[dict]): One entry per image in ``sample_idx`` order, exactly as
            :meth:`FaceVerificationMetric.process` stores them (``sample_idx``, ``issame``,
            ``pair_idx`` and the dumped tensors; ``visibility`` None when the model predicts
            none).
        metric_cfg (dict): Keyword arguments of the set's ``FaceVerificationMetric``.
        matcher_cfg (dict, optional): Config of the bound QAConv matcher (None: none bound).
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
        if 'embedding' in stored:
            servable.add('adaface')
        if 'feature_map' in stored and self.matcher_cfg is not None:
            servable |= {'qaconv', 'qaconv_none'}
            if 'gt_visibility' in stored:
                servable.add('qaconv_gt')
        if {'adaface', 'qaconv'} <= servable:
            servable.add('combined')
        return servable


@METRICS.register_module()
class DumpFaceFeatures(FaceVerificationMetric):
    """Write a verification set's per-image features to ``<out_dir>/<set>.npz``.

    Offline re-scoring (``tools/analysis_tools/eval_features.py``, :func:`score_face_features`)
    recomputes the set's metrics through the same ``FaceVerificationMetric.compute_metrics`` and
    gives the same numbers as the online test. ``tools/test.py --dump DIR`` appends this metric to
    each verification set's evaluator. It collects exactly like :class:`FaceVerificationMetric`
    (one CPU entry per image, float16 maps, visibilities area-averaged to the map grid, chunked
    DDP gathering de-duplicated by ``sample_idx``) and returns no metrics.

    File layout (NumPy ``.npz``, no object arrays: it loads with ``allow_pickle=False``), for
    ``2N`` images in ``sample_idx`` order:

    - ``sample_idx`` int64 ``[2N]``, ``issame`` bool ``[N]`` (pair ``k`` = images ``2k, 2k+1``),
      ``pair_idx`` int64 ``[2N]`` when the data samples carry it;
    - ``embedding`` float32 ``[2N, D]``; ``feature_map`` float16 ``[2N, C, h, w]``;
      ``visibility`` float32 ``[2N, 1, h, w]`` (predicted; only when the model predicts it);
      ``gt_visibility`` float32 ``[2N, 1, h, w]`` (ground truth on the map grid), as far as
      ``score_types`` needs them;
    - ``qaconv_head.<name>``: the bound QAConv matcher's state dict;
    - ``meta``: a JSON string with ``format``, ``set_name``, ``metric_cfg`` and ``matcher_cfg``.

    Args:
        out_dir (str): Folder of the dump files (created on rank 0).
        score_types (Sequence[str]): Score types the dump must serve offline; their fields are
            required in every data sample, as in ``FaceVerificationMetric``. Defaults to all of
            them (``embedding``, ``feature_map`` and ``gt_visibility`` required).
        metric_cfg (dict, optional): The set's ``FaceVerificationMetric`` arguments (``type``
            dropped), recorded for offline scoring. Defaults to None (its defaults).
        gather_chunk (int): Entries each rank sends per gathering round. Defaults to 512.
        collect_device (str): ``'cpu'`` or ``'gpu'``, as in ``FaceVerificationMetric``.
            Defaults to ``'cpu'``.

    Examples:
        >>> test_evaluator = [dict(type='FaceVerificationMetric'),
        ...                   dict(type='DumpFaceFeatures', out_dir='work_dirs/features')]
    """

    def __init__(self,
                 out_dir: str,
                 score_types: Sequence[str] = SCORE_TYPES,
                 metric_cfg: Optional[Mapping[str, Any]] = None,
                 gather_chunk: int = 512,
                 collect_device: str = 'cpu') -> None:
        super().__init__(
            score_types=score_types, gather_chunk=gather_chunk, collect_device=collect_device)
        metric_cfg = {k: v for k, v in dict(metric_cfg or {}).items() if k != 'type'}
        try:
            FaceVerificationMetric(**metric_cfg)
            self._meta_cfg = json.loads(json.dumps(metric_cfg))
        except (TypeError, ValueError) as error:
            raise ValueError(f'DumpFaceFeatures: metric_cfg must hold JSON-serialisable '
                             f'FaceVerificationMetric arguments, got {metric_cfg} ({error})'
                             ) from error
        self.out_dir = str(out_dir)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Write the set's file (rank 0) and return no metrics."""
        entries = _unique_by_index(results)
        issame = _pair_labels(entries)
        name = self.set_name
        if not name:
            raise ValueError('DumpFaceFeatures: the set has no name (dataset metainfo "name"); '
                             'it names the dump file')
        if self._matcher is None and self._qaconv_types:
            print_log(f'DumpFaceFeatures: no QAConv matcher bound for set {name!r}; the dump '
                      'cannot be scored with QAConv offline', logger='current', level=30)
        os.makedirs(self.out_dir, exist_ok=True)
        path = osp.join(self.out_dir, f'{name}.npz')
        _write_npz(path, self._arrays(name, entries, issame))
        print_log(f'DumpFaceFeatures: wrote {len(entries)} images of {name!r} to {path}',
                  logger='current')
        return {}

    def _arrays(self, name: str, entries: List[dict],
                issame: np.ndarray) -> Iterator[Tuple[str, np.ndarray]]:
        """The file's arrays, built one at a time (only one full copy exists at once)."""
        matcher = self._matcher
        matcher_cfg = None if matcher is None else _matcher_cfg(matcher)
        meta = dict(format=DUMP_FORMAT, set_name=name, metric_cfg=self._meta_cfg,
                    matcher_cfg=matcher_cfg)
        yield 'meta', np.array(json.dumps(meta))
        yield 'sample_idx', np.array([e['sample_idx'] for e in entries], dtype=np.int64)
        yield 'issame', issame
        if all(e['pair_idx'] is not None for e in entries):
            yield 'pair_idx', np.array([e['pair_idx'] for e in entries], dtype=np.int64)
        for key, dtype in _IMAGE_FIELDS:
            if key in entries[0] and _all_or_none(entries, key):
                yield key, torch.stack([e[key] for e in entries]).numpy().astype(dtype, copy=False)
        if matcher is not None:
            for key, value in matcher.state_dict().items():
                yield _MATCHER_PREFIX + key, value.detach().cpu().numpy()


def _matcher_cfg(matcher: nn.Module) -> Dict[str, Any]:
    """Constructor arguments of a ``QAConvHead`` (the only matcher the metric scores with)."""
    try:
        return dict(type=type(matcher).__name__, num_features=int(matcher.num_features),
                    height=int(matcher.height), width=int(matcher.width),
                    weighting=str(matcher.weighting))
    except AttributeError as error:
        raise TypeError(f'DumpFaceFeatures: cannot record the matcher {type(matcher).__name__}; '
                        'expected a QAConvHead (num_features, height, width, weighting)'
                        ) from error


def _write_npz(path: str, arrays: Iterator[Tuple[str, np.ndarray]]) -> None:
    """``np.savez`` from a stream of arrays, written to a temporary name and then renamed."""
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, array in arrays:
                with archive.open(f'{key}.npy', 'w', force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def load_face_features(path: str) -> FaceFeatureDump:
    """Read a file written by :class:`DumpFaceFeatures` (no pickle: a crafted file cannot run
    code).

    Args:
        path (str): The ``<set>.npz`` file.

    Returns:
        FaceFeatureDump: The set's entries, metric config and matcher.
    """
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'feature dump not found: {path}')
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f'{path}: not a feature dump .npz ({error})') from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f'{path}: expected an .npz archive, got a single array')
    with data:
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


def score_face_features(dump: FaceFeatureDump,
                        device: Union[str, torch.device] = 'cpu',
                        **overrides) -> Dict[str, float]:
    """Recompute a dumped set's metrics with ``FaceVerificationMetric.compute_metrics``.

    Args:
        dump (FaceFeatureDump): From :func:`load_face_features`.
        device (str | torch.device): Where the QAConv matcher scores. The online test scores
            on the model's device; the same device gives bit-identical QAConv scores (another
            device's kernels may round differently). Defaults to ``'cpu'``.
        **overrides: ``FaceVerificationMetric`` arguments replacing the dumped ones (e.g.
            ``score_types``, ``combine_weights``).

    Returns:
        dict: ``<set>/<score type>/<name>`` -> Python number, the keys of the online test.
    """
    metric = FaceVerificationMetric(**dict(dump.metric_cfg, **overrides))
    missing = set(metric.score_types) - dump.servable_score_types()
    if missing:
        raise ValueError(f'the dump of {dump.set_name!r} holds no fields for the score types '
                         f'{sorted(missing)} (it serves {sorted(dump.servable_score_types())})')
    matcher = dump.build_matcher()
    if matcher is not None:
        metric.bind_matcher(matcher.to(device))
    metrics = metric.compute_metrics(dump.entries)
    return {f'{dump.set_name}/{key}': value for key, value in metrics.items()}
