"""The ``DumpFaceFeatures`` metric, and offline re-scoring of its dumps.

The ``.npz`` format itself (writing, reading, layout) is :mod:`mmoaml.fileio.feature_dump`.
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.logging import print_log

from mmoaml.fileio import DUMP_METRICS_FILE, FaceFeatureDump, load_face_features, save_face_features
from mmoaml.registry import METRICS
from mmoaml.structures import VISIBILITY
from .base_face_metric import all_or_none, unique_by_index
from .face_verification import SCORE_TYPES, FaceVerificationMetric, pair_labels

# The file format moved to mmoaml.fileio; DUMP_METRICS_FILE, FaceFeatureDump and
# load_face_features stay importable from here for the callers that import them from this module.
__all__ = [
    'DumpFaceFeatures', 'FaceFeatureDump', 'load_face_features', 'score_face_features',
    'dump_metric', 'DUMP_METRICS_FILE'
]


@METRICS.register_module()
class DumpFaceFeatures(FaceVerificationMetric):
    """Write a verification set's per-image features to ``<out_dir>/<set>.npz``.

    Offline re-scoring (``tools/analysis_tools/eval_features.py``, :func:`score_face_features`)
    recomputes the set's metrics through the same ``FaceVerificationMetric.compute_metrics`` and
    gives the same numbers as the online test. ``tools/test.py --dump DIR`` appends this metric to
    each verification set's evaluator. It collects exactly like :class:`FaceVerificationMetric`
    (one CPU entry per image, float16 maps, visibilities area-averaged to the map grid, chunked
    DDP gathering de-duplicated by ``sample_idx``) and returns no metrics.

    The file (:func:`mmoaml.fileio.save_face_features`, no pickle) holds the entries' fields
    that ``score_types`` needs (``visibility`` only when the model predicts it), the pair
    labels, the bound QAConv matcher's weights and config, and ``metric_cfg``.

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
            raise ValueError(f'{type(self).__name__}: metric_cfg must hold JSON-serialisable '
                             f'FaceVerificationMetric arguments, got {metric_cfg} ({error})'
                             ) from error
        self.out_dir = str(out_dir)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Write the set's file (on rank 0, where :meth:`evaluate` calls this).

        Args:
            results (list[dict]): Entries made by :meth:`process`, in any order, duplicates
                allowed.

        Returns:
            dict: Empty: the dump adds no metric keys.
        """
        owner = type(self).__name__
        entries = unique_by_index(results)
        issame = pair_labels(entries, owner)
        # The file stacks each field over all images: a model that predicts visibility for
        # only some images has no consistent dump.
        all_or_none(entries, VISIBILITY, owner)
        name = self.set_name
        if not name:
            raise ValueError(f'{owner}: the set has no name (dataset metainfo "name"); it names '
                             'the dump file')
        if self._matcher is None and self._qaconv_types:
            print_log(f'{owner}: no QAConv matcher bound for set {name!r}; the dump cannot be '
                      'scored with QAConv offline', logger='current', level=30)
        os.makedirs(self.out_dir, exist_ok=True)
        path = osp.join(self.out_dir, f'{name}.npz')
        save_face_features(path, name, entries, issame, self._meta_cfg, self._matcher)
        print_log(f'{owner}: wrote {len(entries)} images of {name!r} to {path}', logger='current')
        return {}


def dump_metric(dump: FaceFeatureDump, device: Union[str, torch.device] = 'cpu',
                **overrides) -> FaceVerificationMetric:
    """The dumped set's ``FaceVerificationMetric``, its matcher bound, ready for
    ``compute_metrics(dump.entries)`` (whose ``last_pair_scores`` then hold the pair scores).

    Args:
        dump (FaceFeatureDump): From :func:`load_face_features`.
        device (str | torch.device): Where the QAConv matcher scores. The online test scores
            on the model's device; the same device gives bit-identical QAConv scores (another
            device's kernels may round differently). Defaults to ``'cpu'``.
        **overrides: ``FaceVerificationMetric`` arguments replacing the dumped ones (e.g.
            ``score_types``, ``combine_weights``).
    """
    metric = FaceVerificationMetric(**dict(dump.metric_cfg, **overrides))
    missing = set(metric.score_types) - dump.servable_score_types()
    if missing:
        raise ValueError(f'the dump of {dump.set_name!r} holds no fields for the score types '
                         f'{sorted(missing)} (it serves {sorted(dump.servable_score_types())})')
    matcher = dump.build_matcher()
    if matcher is not None:
        metric.bind_matcher(matcher.to(device))
    return metric


def score_face_features(dump: FaceFeatureDump,
                        device: Union[str, torch.device] = 'cpu',
                        **overrides) -> Dict[str, float]:
    """Recompute a dumped set's metrics with ``FaceVerificationMetric.compute_metrics``.

    Args:
        dump (FaceFeatureDump): From :func:`load_face_features`.
        device, **overrides: see :func:`dump_metric`.

    Returns:
        dict: ``<set>/<score type>/<name>`` -> Python number, the keys of the online test.
    """
    metrics = dump_metric(dump, device, **overrides).compute_metrics(dump.entries)
    return {f'{dump.set_name}/{key}': value for key, value in metrics.items()}
