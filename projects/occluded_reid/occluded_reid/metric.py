"""Rank-1 and mAP of query images against a gallery, per score type (re-identification)."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmoaml.evaluation import BaseFaceMetric, eval_mode
from mmoaml.registry import METRICS
from mmoaml.structures import EMBEDDING, FEATURE_MAP, GT_VISIBILITY, VISIBILITY

__all__ = ['OccludedReIDMetric', 'retrieval_metrics']

#: Score types: the embedding's cosine, and QAConv weighted by predicted visibility, by the
#: ground-truth visibility (an oracle for the occlusion head), or not weighted.
SCORE_TYPES = ('embedding', 'qaconv', 'qaconv_gt', 'qaconv_none')
_QACONV_VISIBILITY = {'qaconv': VISIBILITY, 'qaconv_gt': GT_VISIBILITY, 'qaconv_none': None}


def retrieval_metrics(scores: torch.Tensor, query_labels: Sequence[int],
                      gallery_labels: Sequence[int]) -> Dict[str, float]:
    """Rank-1 and mAP (%) of a ``[Q, G]`` score matrix (higher = more similar).

    Rank-1: the share of queries whose best-scored gallery image shows their person (CMC at
    rank 1). mAP: the mean over queries of the average precision of the whole ranked gallery,
    i.e. of the precision at the rank of each true match (the re-identification convention;
    also MMPretrain's ``RetrievalAveragePrecision`` in ``'IR'`` mode over the full gallery).
    Ties are ranked by gallery order (a stable sort of the negated scores).

    MMPretrain 1.2's ``RetrievalRecall``/``RetrievalAveragePrecision`` would compute the same,
    but they call ``np.in1d``, which NumPy 2.4 removed; hence this function.
    """
    q_labels, g_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    matches = q_labels[:, None] == g_labels[None, :]
    if not matches.any(1).all():
        raise ValueError('every query needs at least one gallery image of its identity')
    order = np.argsort(-scores.float().numpy(), axis=1, kind='stable')
    ranked = np.take_along_axis(matches, order, axis=1)  # [Q, G]: true match at rank r
    hits = np.cumsum(ranked, axis=1)
    precision = hits / np.arange(1, ranked.shape[1] + 1)
    average_precision = (precision * ranked).sum(1) / ranked.sum(1)
    return dict(rank1=100.0 * float(ranked[:, 0].mean()),
                mAP=100.0 * float(average_precision.mean()))


@METRICS.register_module()
class OccludedReIDMetric(BaseFaceMetric):
    """Re-identification of occluded and clean queries against a clean gallery.

    Every test image carries ``gt_label`` (its person), and the metainfo ``role``
    (``'gallery'`` or ``'query'``) and ``occluded`` (bool), as ``SynthPersonDataset`` provides
    them. The model's ``predict`` gives ``embedding``, ``feature_map`` and, when its QAConv is
    visibility-weighted, ``visibility`` (mmoaml's ``OAML`` does). Queries are split into the
    groups ``occluded`` and ``clean``; each group is ranked against the whole gallery by every
    score type:

    - ``'embedding'``: cosine of the (flip-fused) embeddings;
    - ``'qaconv'``: the bound ``QAConvHead.match`` in eval mode with the predicted visibility of
      the query and of the gallery image;
    - ``'qaconv_gt'``: the same with the ground-truth visibility area-averaged to the map grid;
    - ``'qaconv_none'``: the same without visibility weighting.

    Results ``<group>/<score type>/rank1`` and ``<group>/<score type>/mAP`` in percent (see
    :func:`retrieval_metrics`), plus ``num_gallery`` and ``<group>/num_queries``. QAConv needs
    the model's matcher: mmoaml's ``MultiTestLoop``/``MultiValLoop`` bind the model's
    ``qaconv_head`` (:meth:`bind_matcher`). The gathering under DDP is ``BaseFaceMetric``'s.

    Args:
        score_types (Sequence[str]): subset of :data:`SCORE_TYPES`. Defaults to all four.
        gather_chunk (int): see ``BaseFaceMetric``. Defaults to 512.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): set name of the keys. Defaults to None.
    """

    matcher_methods = ('match', )

    def __init__(self,
                 score_types: Sequence[str] = SCORE_TYPES,
                 gather_chunk: int = 512,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(gather_chunk=gather_chunk, collect_device=collect_device, prefix=prefix)
        self.score_types = self.check_score_types(score_types, SCORE_TYPES)

    def make_entry(self, sample: dict) -> dict:
        index = self.sample_index(sample, metainfo=('role', 'occluded'))
        if sample['role'] not in ('gallery', 'query'):
            raise ValueError(f'{type(self).__name__}: sample {index} has role '
                             f"{sample['role']!r}; expected 'gallery' or 'query'")
        label = sample.get('gt_label')
        if label is None:
            raise KeyError(f'{type(self).__name__}: sample {index} has no gt_label')
        entry = dict(sample_idx=index, label=int(label.reshape(-1)[0]), role=sample['role'],
                     occluded=bool(sample['occluded']))
        if 'embedding' in self.score_types:
            entry[EMBEDDING] = self.read_embedding(sample, index)
        if set(self.score_types) & set(_QACONV_VISIBILITY):
            feature_map = self.read_feature_map(sample, index)
            grid = tuple(feature_map.shape[1:])
            entry[FEATURE_MAP] = feature_map
            if 'qaconv' in self.score_types:
                entry[VISIBILITY] = self.read_visibility(sample, index, grid)
            if 'qaconv_gt' in self.score_types:
                entry[GT_VISIBILITY] = self.read_gt_visibility(sample, index, grid)
        return entry

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Rank every query group against the gallery with every score type."""
        gallery = [e for e in results if e['role'] == 'gallery']
        groups = {
            'occluded': [e for e in results if e['role'] == 'query' and e['occluded']],
            'clean': [e for e in results if e['role'] == 'query' and not e['occluded']],
        }
        if not gallery or not any(groups.values()):
            raise ValueError(f'{type(self).__name__}: needs gallery and query images, got '
                             f'{len(gallery)} gallery and {sum(map(len, groups.values()))} query')
        metrics: Dict[str, float] = dict(num_gallery=len(gallery))
        gallery_labels = [e['label'] for e in gallery]
        for group, queries in groups.items():
            if not queries:
                continue
            metrics[f'{group}/num_queries'] = len(queries)
            for score_type in self.score_types:
                scores = self._scores(score_type, queries, gallery)
                for key, value in retrieval_metrics(scores, [e['label'] for e in queries],
                                                    gallery_labels).items():
                    metrics[f'{group}/{score_type}/{key}'] = value
        return metrics

    def _scores(self, score_type: str, queries: List[dict], gallery: List[dict]) -> torch.Tensor:
        """``[Q, G]`` float32 scores of one type."""
        if score_type == 'embedding':
            q = torch.stack([e[EMBEDDING] for e in queries])
            g = torch.stack([e[EMBEDDING] for e in gallery])
            return q @ g.t()
        vis_key = _QACONV_VISIBILITY[score_type]
        matcher, device = self.bound_matcher([score_type])

        def stack(entries: List[dict], key: Optional[str]) -> Optional[torch.Tensor]:
            if key is None:
                return None
            values = [e.get(key) for e in entries]
            if any(v is None for v in values):
                if score_type == 'qaconv' and all(v is None for v in values):
                    return None  # the model predicts no visibility: unweighted
                raise ValueError(f'{type(self).__name__}: {key!r} missing for some images')
            return torch.stack(values).to(device)

        # Eval-mode BN: each score depends on its own pair only.
        with eval_mode(matcher), torch.no_grad():
            return matcher.match(
                stack(queries, FEATURE_MAP), stack(gallery, FEATURE_MAP),
                probe_vis=stack(queries, vis_key), gallery_vis=stack(gallery, vis_key)).cpu()
