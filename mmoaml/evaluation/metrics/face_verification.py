"""Pair verification metric for OAML: AdaFace, QAConv and fused scores on one pair list."""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from mmoaml.registry import METRICS
from mmoaml.structures import EMBEDDING, FEATURE_MAP, GT_VISIBILITY, VISIBILITY
from ..functional import (equal_error_rate, fused_scores, roc_auc, tar_at_far,
                          verification_accuracy, verification_accuracy_l2)
from .base_face_metric import BaseFaceMetric, all_or_none, eval_mode, stack_field, unique_by_index

SCORE_TYPES = ('adaface', 'qaconv', 'qaconv_gt', 'qaconv_none', 'combined')
# Which stored visibility each QAConv score type matches with (None = no weighting).
_QACONV_VISIBILITY = {'qaconv': VISIBILITY, 'qaconv_gt': GT_VISIBILITY, 'qaconv_none': None}


@METRICS.register_module()
class FaceVerificationMetric(BaseFaceMetric):
    """Verification accuracy, TAR@FAR, AUC and EER of face pairs, per score type.

    The data set lays out pair ``k`` as images ``2k`` and ``2k+1`` (dataset indices, read from
    the ``sample_idx`` metainfo), both carrying the pair's ``issame`` label (and ``pair_idx``,
    checked when present). Per image the model's ``predict`` provides:

    - ``embedding``: ``[D]`` flip-fused unit embedding;
    - ``feature_map``: ``[C, h, w]`` map matched by QAConv (stored in float16 at once);
    - ``visibility``: ``[1, h, w]`` predicted visibility (1 = visible face), optional;
    - ``gt_visibility``: ``[1, H, W]`` pixel ground truth, optional; area-averaged to the map
      grid with :func:`mmoaml.structures.area_downsample` at once.

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
    - ``'combined'``: ``w_a * z(adaface) + w_q * z(qaconv)`` where ``z``
      (:func:`~mmoaml.evaluation.functional.standardise`) standardises a score type over all
      pairs of the set (subtract the mean, divide by the population std). The
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

    Under DDP, :meth:`evaluate` (:class:`BaseFaceMetric`) gathers the entries to rank 0 in
    rounds of ``gather_chunk`` entries per rank (all ranks loop equally often), dropping the
    sampler's padding by ``sample_idx``; rank 0 computes and broadcasts the result (or its
    error) to every rank.

    After each :meth:`compute_metrics` (on rank 0 only under DDP) the per-pair scores stay
    available for plots and operating points: :attr:`last_pair_scores` maps each requested
    score type to its float64 ``[N]`` scores and :attr:`last_issame` holds the bool ``[N]``
    pair labels (both None before the first evaluation).

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
        gather_chunk (int): Entries per rank and gathering round (:class:`BaseFaceMetric`).
            Defaults to 512.
        collect_device (str): ``'cpu'`` (a gloo group) or ``'gpu'`` (the default process
            group) for the gathering. Defaults to ``'cpu'``.
        prefix (str, optional): Set name of the keys. Defaults to None (use
            ``dataset_meta['name']``).

    Examples:
        >>> val_evaluator = dict(type='FaceVerificationMetric',
        ...                      score_types=('adaface', 'qaconv', 'qaconv_gt', 'combined'))
    """

    matcher_methods = ('match_pairs', )

    def __init__(self,
                 nfolds: int = 10,
                 far: Sequence[float] = (1e-3, ),
                 score_types: Sequence[str] = ('adaface', 'qaconv', 'combined'),
                 combine_weights: Sequence[float] = (0.5, 0.5),
                 qaconv_chunk: int = 512,
                 gather_chunk: int = 512,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(gather_chunk=gather_chunk, collect_device=collect_device, prefix=prefix)
        self.nfolds = self._check_int('nfolds', nfolds, minimum=2)
        self.far = self._check_rates('far', far, allow_empty=False)
        self.score_types = self.check_score_types(score_types, SCORE_TYPES)
        self.combine_weights = self._check_combine_weights(combine_weights)
        self.qaconv_chunk = self._check_int('qaconv_chunk', qaconv_chunk)
        needed = set(self.score_types)
        if 'combined' in needed:
            needed |= {'adaface', 'qaconv'}
        self._needs_embedding = 'adaface' in needed
        self._needs_maps = bool(needed & set(_QACONV_VISIBILITY))
        self._needs_visibility = 'qaconv' in needed
        self._needs_gt_visibility = 'qaconv_gt' in needed
        self._qaconv_types = [t for t in _QACONV_VISIBILITY if t in needed]
        self.last_pair_scores: Optional[Dict[str, np.ndarray]] = None
        self.last_issame: Optional[np.ndarray] = None

    def make_entry(self, sample: dict) -> dict:
        """Labels of the pair and only the fields the requested score types need."""
        index = self.sample_index(sample, metainfo=('issame', ))
        pair_idx = sample.get('pair_idx')
        entry = dict(
            sample_idx=index,
            issame=bool(sample['issame']),
            pair_idx=None if pair_idx is None else int(pair_idx))
        if self._needs_embedding:
            entry[EMBEDDING] = self.read_embedding(sample, index)
        if not self._needs_maps:
            return entry
        feature_map = self.read_feature_map(sample, index)
        grid = tuple(feature_map.shape[1:])
        entry[FEATURE_MAP] = feature_map
        if self._needs_visibility:
            entry[VISIBILITY] = self.read_visibility(sample, index, grid)
        if self._needs_gt_visibility:
            entry[GT_VISIBILITY] = self.read_gt_visibility(sample, index, grid)
        return entry

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Pair up the images and evaluate every score type.

        Args:
            results (list[dict]): Entries made by :meth:`process`, in any order, duplicates
                allowed.

        Returns:
            dict: ``<score type>/<name>`` and ``num_pairs``, ``num_impostors`` -> Python numbers.
        """
        entries = unique_by_index(results)
        issame = pair_labels(entries, type(self).__name__)
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
        self.last_pair_scores = {t: scores[t] for t in self.score_types}
        self.last_issame = issame
        return metrics

    def _scores(self, entries: List[dict]) -> Dict[str, Any]:
        """Per-pair float64 scores of every needed type (+ the embedding pairs)."""
        scores: Dict[str, Any] = {}
        if self._needs_embedding:
            embeddings = torch.stack([e[EMBEDDING] for e in entries]).numpy()
            first, second = embeddings[0::2], embeddings[1::2]
            scores['embeddings'] = (first, second)
            scores['adaface'] = np.sum(first.astype(np.float64) * second, axis=1)
        for score_type in self._qaconv_types:
            scores[score_type] = self._qaconv_pair_scores(entries,
                                                          _QACONV_VISIBILITY[score_type])
        if 'combined' in self.score_types:
            scores['combined'] = fused_scores(scores['adaface'], scores['qaconv'],
                                              *self.combine_weights)
        return scores

    def _qaconv_pair_scores(self, entries: List[dict], vis_key: Optional[str]) -> np.ndarray:
        """``match_pairs`` of images ``(2k, 2k+1)`` in eval mode, ``qaconv_chunk`` pairs at a
        time: only one block of maps is ever stacked (and converted by the matcher)."""
        matcher, device = self.bound_matcher(self._qaconv_types)
        if vis_key is not None and not all_or_none(entries, vis_key, type(self).__name__):
            vis_key = None
        scores = []
        with eval_mode(matcher), torch.no_grad():
            for start in range(0, len(entries), 2 * self.qaconv_chunk):
                block = entries[start:start + 2 * self.qaconv_chunk]
                maps = stack_field(block, FEATURE_MAP, device)
                vis = None if vis_key is None else stack_field(block, vis_key, device)
                scores.append(
                    matcher.match_pairs(maps[0::2], maps[1::2],
                                        None if vis is None else vis[0::2],
                                        None if vis is None else vis[1::2]).float().cpu())
        return torch.cat(scores).double().numpy()


def pair_labels(entries: Sequence[dict], owner: str) -> np.ndarray:
    """Check the verification layout (pair ``k`` = images ``2k, 2k+1``) and read its labels.

    Args:
        entries (Sequence[dict]): Distinct entries sorted by ``sample_idx`` (see
            :func:`unique_by_index`), each with ``issame`` and ``pair_idx`` (None or int).
        owner (str): Name of the caller for the errors, e.g. the metric class.

    Returns:
        np.ndarray: bool ``[N]``, ``True`` = same identity, for the ``2N`` images.
    """
    indices = [e['sample_idx'] for e in entries]
    if indices != list(range(len(entries))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ValueError(f'{owner}: expected the images 0..2N-1 of N pairs, got '
                         f'{len(entries)} images with sample_idx from {min(indices)} to '
                         f'{max(indices)} (missing: {missing[:10]})')
    if len(entries) % 2 or not entries:
        raise ValueError(f'{owner}: {len(entries)} images cannot form pairs (2k, 2k+1)')
    labels = []
    for k in range(len(entries) // 2):
        a, b = entries[2 * k], entries[2 * k + 1]
        if a['issame'] != b['issame'] or a['pair_idx'] != b['pair_idx']:
            raise ValueError(
                f'{owner}: images {2 * k} and {2 * k + 1} should form pair {k} but carry '
                f"pair_idx {a['pair_idx']}/{b['pair_idx']} and issame {a['issame']}/"
                f"{b['issame']}")
        labels.append(a['issame'])
    return np.asarray(labels, dtype=bool)
