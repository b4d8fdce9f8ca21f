"""Pair verification metric for OAML: AdaFace, QAConv and fused scores on one pair list."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.dist import (all_reduce, broadcast_object_list, gather_object, get_rank,
                           get_world_size, is_distributed, is_main_process)
from mmengine.evaluator import BaseMetric

from mmoaml.registry import METRICS
from mmoaml.structures import area_downsample
from ..functional import (equal_error_rate, roc_auc, tar_at_far, verification_accuracy,
                          verification_accuracy_l2)

SCORE_TYPES = ('adaface', 'qaconv', 'qaconv_gt', 'qaconv_none', 'combined')
# Which stored visibility each QAConv score type matches with (None = no weighting).
_QACONV_VISIBILITY = {'qaconv': 'visibility', 'qaconv_gt': 'gt_visibility', 'qaconv_none': None}


@METRICS.register_module()
class FaceVerificationMetric(BaseMetric):
    """Verification accuracy, TAR@FAR, AUC and EER of face pairs, per score type.

    The data set lays out pair ``k`` as images ``2k`` and ``2k+1`` (dataset indices, read from
    the ``sample_idx`` metainfo), both carrying the pair's ``issame`` label (and ``pair_idx``,
    checked when present). Per image the model's ``predict`` provides:

    - ``embedding``: ``[D]`` flip-fused unit embedding;
    - ``feature_map``: ``[C, h, w]`` map matched by QAConv (stored in float16 at once);
    - ``visibility``: ``[1, h, w]`` predicted visibility (1 = visible face), optional;
    - ``gt_visibility``: ``[1, H, W]`` pixel ground truth, optional; area-averaged to the map
      grid with :func:`mmoaml.utils.area_downsample` at once.

    Only what the requested score types need is stored: one entry per image, on the CPU.

    Score types (each one a per-pair score, higher = more similar):

    - ``'adaface'``: cosine of the embeddings. Its accuracy is the standard protocol exactly
      (:func:`verification_accuracy_l2`: squared L2 distance, 400 thresholds); its
      ``threshold`` is given as a cosine (``1 - d/2``) and ``l2_threshold`` as the reference's
      squared-L2 ``best_threshold``.
    - ``'qaconv'``: the bound QAConv matcher's score, weighted by the predicted visibility
      (unweighted when the model predicts none).
    - ``'qaconv_gt'``: the same with the ground-truth visibility (an oracle for the occlusion
      head); ``'qaconv_none'``: without any weighting.
    - ``'combined'``: ``w_a * z(adaface) + w_q * z(qaconv)`` where ``z`` standardises a score
      type over all pairs of the set (subtract the mean, divide by the population std). The
      two scores live on different scales (a cosine in ``[-1, 1]`` and an unbounded logit);
      standardising makes the weights mean "share of the spread". It uses no labels, so the
      fold protocol stays free of label leakage; it is transductive (the statistics include the
      held-out folds' scores).

    Other score types search their threshold over the midpoints of the training folds' scores
    (:func:`verification_accuracy`). Per score type the results are ``accuracy``,
    ``accuracy_std``, ``threshold`` (same iff ``score > threshold``, mean over folds),
    ``tar@far=<f>`` per FAR target, ``auc`` and ``eer``; per set ``num_pairs`` and
    ``num_impostors`` (say how meaningful a low FAR is). Keys read
    ``<set>/<score type>/<name>``, e.g. ``lfw/adaface/accuracy``, where ``<set>`` is ``prefix``
    if given, else ``dataset_meta['name']`` (no set level when neither exists).

    QAConv scores need the model's matcher (its learned BN/FC): call :meth:`bind_matcher` with
    the ``QAConvHead``; :class:`mmoaml.engine.MultiValLoop` / ``MultiTestLoop`` do so when the
    model has a ``qaconv_head``. Pairs are scored with its ``match_pairs`` in eval mode, in
    blocks of ``qaconv_chunk`` pairs stacked from the entries and moved to the matcher's device
    one at a time, so memory grows with the number of images only by the stored float16 maps
    (measured: ``tools/benchmarks/verification_metric.py``).

    Under DDP, :meth:`evaluate` gathers the entries to rank 0 in rounds of ``gather_chunk``
    entries per rank (all ranks loop equally often), dropping the sampler's padding by
    ``sample_idx``; rank 0 computes and broadcasts the result (or its error) to every rank.

    Args:
        nfolds (int): Folds of the accuracy protocol. Defaults to 10 (standard protocol).
        far (Sequence[float]): FAR targets of TAR@FAR. Defaults to ``(1e-3,)`` (3 false accepts
            among LFW's 3,000 impostor pairs; 1e-4 would allow none there).
        score_types (Sequence[str]): Subset of ``('adaface', 'qaconv', 'qaconv_gt',
            'qaconv_none', 'combined')``. Defaults to ``('adaface', 'qaconv', 'combined')``.
        combine_weights (Sequence[float]): ``(w_adaface, w_qaconv)`` of ``'combined'``, non
            negative. Defaults to ``(0.5, 0.5)`` (OAML report).
        qaconv_chunk (int): Pairs per ``match_pairs`` call. Defaults to 512 (about 100 MB of
            float32 maps at 512x7x7).
        gather_chunk (int): Entries each rank sends per gathering round. Defaults to 512
            (about 26 MB of float16 512x7x7 maps).
        collect_device (str): ``'cpu'``: gather over a gloo group (host memory and network
            only, created on first use); ``'gpu'``: over the default process group.
            Defaults to ``'cpu'``.
        prefix (str, optional): Set name of the keys. Defaults to None (use
            ``dataset_meta['name']``).

    Examples:
        >>> val_evaluator = dict(type='FaceVerificationMetric',
        ...                      score_types=('adaface', 'qaconv', 'qaconv_gt', 'combined'))
    """

    def __init__(self,
                 nfolds: int = 10,
                 far: Sequence[float] = (1e-3, ),
                 score_types: Sequence[str] = ('adaface', 'qaconv', 'combined'),
                 combine_weights: Sequence[float] = (0.5, 0.5),
                 qaconv_chunk: int = 512,
                 gather_chunk: int = 512,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        if collect_device not in ('cpu', 'gpu'):
            raise ValueError(f"collect_device must be 'cpu' or 'gpu', got {collect_device!r}")
        super().__init__(collect_device=collect_device, prefix=prefix)
        score_types = tuple(score_types)
        unknown = set(score_types) - set(SCORE_TYPES)
        if not score_types or unknown or len(set(score_types)) != len(score_types):
            raise ValueError(f'score_types must be distinct names from {SCORE_TYPES}, got '
                             f'{score_types}')
        weights = tuple(float(w) for w in combine_weights)
        if len(weights) != 2 or min(weights) < 0 or sum(weights) == 0:
            raise ValueError('combine_weights must be two non-negative numbers, not both 0, '
                             f'got {combine_weights}')
        fars = tuple(float(f) for f in far)
        if not fars or not all(0 < f <= 1 for f in fars):
            raise ValueError(f'far must hold targets in (0, 1], got {far}')
        for name, value in (('nfolds', nfolds), ('qaconv_chunk', qaconv_chunk),
                            ('gather_chunk', gather_chunk)):
            if not isinstance(value, int) or value < (2 if name == 'nfolds' else 1):
                raise ValueError(f'{name} must be a positive integer (nfolds >= 2), got '
                                 f'{value!r}')
        self.nfolds = nfolds
        self.far = fars
        self.score_types = score_types
        self.combine_weights = weights
        self.qaconv_chunk = qaconv_chunk
        self.gather_chunk = gather_chunk
        needed = set(score_types) | ({'adaface', 'qaconv'} if 'combined' in score_types else set())
        self._needs_embedding = 'adaface' in needed
        self._needs_maps = bool(needed & set(_QACONV_VISIBILITY))
        self._needs_visibility = 'qaconv' in needed
        self._needs_gt_visibility = 'qaconv_gt' in needed
        self._qaconv_types = [t for t in _QACONV_VISIBILITY if t in needed]
        self._matcher: Optional[nn.Module] = None
        self._cpu_group = None

    @property
    def set_name(self) -> Optional[str]:
        """The set level of the result keys: ``prefix``, else ``dataset_meta['name']``."""
        return self.prefix or (self.dataset_meta or {}).get('name')

    def bind_matcher(self, matcher: nn.Module) -> None:
        """Use ``matcher`` (a ``QAConvHead``: ``match_pairs(probe, gallery, probe_vis,
        gallery_vis) -> [N]``) for the QAConv score types."""
        if not callable(getattr(matcher, 'match_pairs', None)):
            raise TypeError('FaceVerificationMetric.bind_matcher: the matcher must provide '
                            f'match_pairs(probe, gallery, probe_vis, gallery_vis), got '
                            f'{type(matcher).__name__}')
        self._matcher = matcher

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store one CPU entry per image (float16 maps, grid-sized visibilities)."""
        for sample in data_samples:
            self.results.append(self._entry(sample))

    def _entry(self, sample: dict) -> dict:
        if 'sample_idx' not in sample or 'issame' not in sample:
            raise KeyError('FaceVerificationMetric: every data sample needs the metainfo '
                           f"'sample_idx' and 'issame', got keys {sorted(sample)}")
        index = int(sample['sample_idx'])
        pair_idx = sample.get('pair_idx')
        entry = dict(
            sample_idx=index,
            issame=bool(sample['issame']),
            pair_idx=None if pair_idx is None else int(pair_idx))
        if self._needs_embedding:
            embedding = self._field(sample, 'embedding', index)
            if embedding.dim() != 1:
                raise ValueError(f'FaceVerificationMetric: embedding of sample {index} must be '
                                 f'[D], got {list(embedding.shape)}')
            entry['embedding'] = _own_copy(embedding, torch.float32)
        if not self._needs_maps:
            return entry
        feature_map = self._field(sample, 'feature_map', index)
        if feature_map.dim() != 3:
            raise ValueError(f'FaceVerificationMetric: feature_map of sample {index} must be '
                             f'[C, h, w], got {list(feature_map.shape)}')
        grid = tuple(feature_map.shape[1:])
        entry['feature_map'] = _own_copy(feature_map, torch.float16)
        if self._needs_visibility:
            vis = sample.get('visibility')
            if vis is not None:
                if vis.numel() != math.prod(grid):
                    raise ValueError(f'FaceVerificationMetric: visibility of sample {index} '
                                     f'must be [1, {grid[0]}, {grid[1]}] (the map grid), got '
                                     f'{list(vis.shape)}')
                vis = _own_copy(vis, torch.float32).reshape(1, *grid)
            entry['visibility'] = vis
        if self._needs_gt_visibility:
            gt = self._field(sample, 'gt_visibility', index)
            if gt.dim() != 3 or gt.shape[0] != 1:
                raise ValueError(f'FaceVerificationMetric: gt_visibility of sample {index} must '
                                 f'be [1, H, W], got {list(gt.shape)}')
            entry['gt_visibility'] = area_downsample(gt.detach().cpu(), grid)[0]
        return entry

    @staticmethod
    def _field(sample: dict, key: str, index: int) -> torch.Tensor:
        value = sample.get(key)
        if not isinstance(value, torch.Tensor):
            raise KeyError(f"FaceVerificationMetric: sample {index} has no tensor '{key}' (the "
                           'model predict() output); the requested score types need it')
        return value

    def evaluate(self, size: int) -> dict:
        """Gather the entries to rank 0 in chunks, compute there, broadcast the metrics.

        Args:
            size (int): Number of images of the data set; the de-duplicated entries must
                cover exactly this many.

        Returns:
            dict: ``<set>/<score type>/<name>`` -> Python number, on every rank.
        """
        group = self._collect_group()
        entries = self._gather(group) if get_world_size(group) > 1 else self.results
        self.results = []
        payload: List[Optional[Tuple[str, Any]]] = [None]
        failure = None
        if is_main_process():
            try:
                entries = _unique_by_index(entries)
                if len(entries) != size:
                    raise ValueError(f'FaceVerificationMetric: collected {len(entries)} '
                                     f'distinct images, the data set has {size}')
                name = self.set_name
                metrics = self.compute_metrics(entries)
                payload = [('ok', {f'{name}/{k}' if name else k: v
                                   for k, v in metrics.items()})]
            except Exception as error:  # every rank must leave the broadcast below
                failure = error
                payload = [('error', f'{type(error).__name__}: {error}')]
        del entries
        if get_world_size(group) > 1:
            broadcast_object_list(payload, src=0, group=group)
        status, value = payload[0]
        if failure is not None:
            raise failure
        if status == 'error':
            raise RuntimeError(f'FaceVerificationMetric failed on rank 0: {value}')
        return value

    def _collect_group(self):
        if not is_distributed() or self.collect_device == 'gpu':
            return None
        if self._cpu_group is None:
            self._cpu_group = torch_dist.new_group(backend='gloo')
        return self._cpu_group

    def _gather(self, group) -> Optional[List[dict]]:
        """Entries of all ranks on rank 0 (None elsewhere), de-duplicated while gathering."""
        rounds = torch.tensor([math.ceil(len(self.results) / self.gather_chunk)])
        all_reduce(rounds, op='max', group=group)
        collected: Optional[Dict[int, dict]] = {} if get_rank() == 0 else None
        for start in range(0, int(rounds) * self.gather_chunk, self.gather_chunk):
            parts = gather_object(self.results[start:start + self.gather_chunk], 0, group)
            if collected is not None:
                for entry in (e for part in parts for e in part):
                    collected.setdefault(entry['sample_idx'], entry)
        return None if collected is None else list(collected.values())

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Pair up the images and evaluate every score type.

        Args:
            results (list[dict]): Entries made by :meth:`process`, in any order, duplicates
                allowed.

        Returns:
            dict: ``<score type>/<name>`` and ``num_pairs``, ``num_impostors`` -> Python numbers.
        """
        entries = _unique_by_index(results)
        issame = _pair_labels(entries)
        scores = self._scores(entries)
        num_pairs = int(issame.size)
        metrics: Dict[str, float] = dict(
            num_pairs=num_pairs, num_impostors=int(np.count_nonzero(~issame)))
        for score_type in self.score_types:
            s = scores[score_type]
            if score_type == 'adaface':
                acc, std, l2_threshold = verification_accuracy_l2(
                    *scores['embeddings'], issame, self.nfolds)
                threshold = 1.0 - l2_threshold / 2
                metrics['adaface/l2_threshold'] = l2_threshold
            else:
                acc, std, threshold = verification_accuracy(s, issame, self.nfolds)
            metrics[f'{score_type}/accuracy'] = acc
            metrics[f'{score_type}/accuracy_std'] = std
            metrics[f'{score_type}/threshold'] = threshold
            for point in tar_at_far(s, issame, self.far):
                metrics[f'{score_type}/tar@far={point.far_target:g}'] = point.tar
            metrics[f'{score_type}/auc'] = roc_auc(s, issame)
            metrics[f'{score_type}/eer'] = equal_error_rate(s, issame)
        return metrics

    def _scores(self, entries: List[dict]) -> Dict[str, Any]:
        """Per-pair float64 scores of every needed type (+ the embedding pairs)."""
        scores: Dict[str, Any] = {}
        if self._needs_embedding:
            embeddings = torch.stack([e['embedding'] for e in entries]).numpy()
            first, second = embeddings[0::2], embeddings[1::2]
            scores['embeddings'] = (first, second)
            scores['adaface'] = np.sum(first.astype(np.float64) * second, axis=1)
        for score_type in self._qaconv_types:
            scores[score_type] = self._qaconv_pair_scores(entries,
                                                          _QACONV_VISIBILITY[score_type])
        if 'combined' in self.score_types:
            w_ada, w_qa = self.combine_weights
            scores['combined'] = (w_ada * _standardise(scores['adaface']) +
                                  w_qa * _standardise(scores['qaconv']))
        return scores

    def _qaconv_pair_scores(self, entries: List[dict], vis_key: Optional[str]) -> np.ndarray:
        """``match_pairs`` of images ``(2k, 2k+1)`` in eval mode, ``qaconv_chunk`` pairs at a
        time: only one block of maps is ever stacked (and converted by the matcher)."""
        matcher = self._matcher
        if matcher is None:
            raise RuntimeError(
                f'FaceVerificationMetric: score types {self._qaconv_types} need the QAConv '
                'matcher; call bind_matcher(model.qaconv_head) (MultiValLoop/MultiTestLoop do '
                'this for models with a qaconv_head)')
        if vis_key is not None and not _all_or_none(entries, vis_key):
            vis_key = None
        device = next(matcher.parameters(), torch.empty(0)).device
        was_training = matcher.training
        # Eval mode scores each pair on its own (train-mode BN would mix the pairs of a block).
        matcher.eval()
        try:
            scores = []
            with torch.no_grad():
                for start in range(0, len(entries), 2 * self.qaconv_chunk):
                    block = entries[start:start + 2 * self.qaconv_chunk]
                    maps = torch.stack([e['feature_map'] for e in block]).to(device)
                    vis = None if vis_key is None else torch.stack(
                        [e[vis_key] for e in block]).to(device)
                    scores.append(
                        matcher.match_pairs(maps[0::2], maps[1::2],
                                            None if vis is None else vis[0::2],
                                            None if vis is None else vis[1::2]).float().cpu())
        finally:
            matcher.train(was_training)
        return torch.cat(scores).double().numpy()


def _own_copy(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A CPU copy with its own storage: a per-image view of a batch tensor would keep the whole
    batch alive and be pickled whole when the entries are gathered."""
    return tensor.detach().to('cpu', dtype, copy=True)


def _unique_by_index(entries: Sequence[dict]) -> List[dict]:
    """Entries sorted by ``sample_idx``, the first of each index kept (sampler padding)."""
    unique: Dict[int, dict] = {}
    for entry in entries:
        unique.setdefault(entry['sample_idx'], entry)
    return [unique[i] for i in sorted(unique)]


def _pair_labels(entries: List[dict]) -> np.ndarray:
    """Check the ``(2k, 2k+1)`` layout and return the ``[N/2]`` pair labels."""
    indices = [e['sample_idx'] for e in entries]
    if indices != list(range(len(entries))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ValueError('FaceVerificationMetric: expected the images 0..2N-1 of N pairs, got '
                         f'{len(entries)} images with sample_idx from {min(indices)} to '
                         f'{max(indices)} (missing: {missing[:10]})')
    if len(entries) % 2 or not entries:
        raise ValueError(f'FaceVerificationMetric: {len(entries)} images cannot form pairs '
                         '(2k, 2k+1)')
    labels = []
    for k in range(len(entries) // 2):
        a, b = entries[2 * k], entries[2 * k + 1]
        if a['issame'] != b['issame'] or a['pair_idx'] != b['pair_idx']:
            raise ValueError(
                f'FaceVerificationMetric: images {2 * k} and {2 * k + 1} should form pair {k} '
                f"but carry pair_idx {a['pair_idx']}/{b['pair_idx']} and issame "
                f"{a['issame']}/{b['issame']}")
        labels.append(a['issame'])
    return np.asarray(labels, dtype=bool)


def _all_or_none(entries: List[dict], key: str) -> bool:
    """Whether every entry has ``key`` (False: none has it; an error when only some have)."""
    present = sum(e.get(key) is not None for e in entries)
    if 0 < present < len(entries):
        raise ValueError(f"FaceVerificationMetric: '{key}' is given for {present} of "
                         f'{len(entries)} images; provide it for all or none')
    return present > 0


def _standardise(scores: np.ndarray) -> np.ndarray:
    """Label-free z-score over the pairs of the set (zeros for a constant score)."""
    std = scores.std()
    centred = scores - scores.mean()
    return centred / std if std > 0 else centred
