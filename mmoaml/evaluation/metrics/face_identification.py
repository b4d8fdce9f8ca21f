"""1:N face identification metric: AdaFace cosine search, QAConv re-ranking of its shortlist."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

from mmoaml.registry import METRICS
from mmoaml.structures import EMBEDDING, FEATURE_MAP, GT_LABEL, VISIBILITY
from ..functional import (SearchOutcome, cmc_rates, concatenate_outcomes, search_outcome,
                          shortlist_recall, standardise, tpir_at_fpir)
from .base_face_metric import BaseFaceMetric, all_or_none, eval_mode, stack_field, unique_by_index

SCORE_TYPES = ('adaface', 'qaconv', 'combined')
ROLES = ('gallery', 'probe')
# Bytes of float32 maps that one full-gallery QAConv call (shortlist recall) normalises at once.
_GALLERY_BLOCK_BYTES = 128 * 2**20
# Probe x gallery cosines per block by default: search_outcome holds about 35 bytes per score,
# so a block stays near 150 MB whatever the gallery size.
_COSINE_BLOCK_SCORES = 2**22


@METRICS.register_module()
class FaceIdentificationMetric(BaseFaceMetric):
    """Closed-set rank-k and open-set TPIR@FPIR of a probe set searched in a gallery.

    **Data.** One data set holds both sides. Each image's data sample carries the metainfo
    ``sample_idx`` (its dataset index), ``role`` (``'gallery'`` or ``'probe'``; the key is
    ``role_key``) and ``gt_label`` (identity; gallery and probes share one label space). A
    data set marks the role by putting ``role`` in each data info; ``PackFaceInputs`` copies it
    when listed in its ``meta_keys`` (``meta_keys=(*PackFaceInputs.DEFAULT_META_KEYS,
    'role')``). From the model's ``predict`` it reads ``embedding`` (``[D]``, unit),
    ``feature_map`` (``[C, h, w]``, stored in float16 at once; only for QAConv score types) and
    ``visibility`` (``[1, h, w]``, optional: QAConv is visibility-weighted when every image has
    one).

    **Protocol** (:mod:`mmoaml.evaluation.functional.identification`): a probe is mated when
    its identity has a gallery image; an identity's score is the maximum over its images;
    ``rank-k`` is the fraction of mated probes whose identity ranks within the first ``k``
    (ties count against the probe); ``tpir@fpir=f`` sets the threshold on the non-mated probes'
    best scores and counts mated probes found at rank 1 above it. TPIR keys are left out, with
    a logged note, when the probe set has no non-mated probe (a closed set).

    **Score types.**

    - ``'adaface'``: cosine of the embeddings against the whole gallery (one matrix product
      per block of ``chunk_size`` probes; only per-probe results are kept).
    - ``'qaconv'``: the bound matcher's score on the AdaFace shortlist: each probe's
      ``shortlist_k`` best gallery images by cosine are re-scored with
      ``QAConvHead.match_pairs`` (in eval mode, ``qaconv_chunk`` pairs per call) and ranked by
      that score; gallery images outside the shortlist count as unscored. The cost is
      ``P * k`` QAConv pairs instead of ``P * G``, so it scales to large galleries. Its
      faithfulness is reported as ``qaconv/shortlist_recall``: on ``recall_probes`` probes
      (evenly spaced; all when None) the whole gallery is scored with ``QAConvHead.match`` and
      the recall is the fraction whose full-QAConv top-1 image lies in their shortlist.
    - ``'combined'``: ``w_a * z(cosine) + w_q * z(qaconv)`` on the same shortlist, ``z``
      (:func:`~mmoaml.evaluation.functional.standardise`) standardising each score over all
      ``P * k`` shortlisted pairs (label free, like ``FaceVerificationMetric``'s fusion).

    Keys: ``<set>/<score type>/rank-<k>``, ``<set>/<score type>/tpir@fpir=<f>``, and
    ``num_gallery``, ``num_identities``, ``num_probes``, ``num_mated``, ``num_non_mated``,
    ``shortlist_k``, ``qaconv/shortlist_recall``, ``qaconv/recall_probes``; ``<set>`` is
    ``prefix`` if given, else ``dataset_meta['name']``.

    QAConv scores need the model's matcher: call :meth:`bind_matcher` with the ``QAConvHead``
    (``MultiValLoop``/``MultiTestLoop`` bind it for models with a ``qaconv_head``).

    Memory: one CPU entry per image (float32 embedding, float16 map, grid visibility); QAConv
    inputs are gathered from the entries block by block (``qaconv_chunk`` pairs, or about
    128 MB of gallery maps for the recall), so evaluation adds bounded workspace, not a second
    copy of the maps (``tools/benchmarks/eval_scaling.py`` measures it).

    Gathering (:class:`BaseFaceMetric`): the entries reach rank 0 in rounds of ``gather_chunk``
    entries per rank, the sampler's padding dropped by ``sample_idx``; rank 0 computes and
    broadcasts the result, or its error, so no rank is left waiting.

    Args:
        topk (Sequence[int]): ranks of the CMC. Defaults to ``(1, 5)``; none may exceed
            ``shortlist_k``.
        fpir (Sequence[float]): open-set FPIR targets in ``(0, 1]``; empty = closed set only.
            Defaults to ``(0.01, 0.1)`` (the points IJB-B/C 1:N results are reported at).
        score_types (Sequence[str]): subset of ``('adaface', 'qaconv', 'combined')``. Defaults
            to all three.
        shortlist_k (int): AdaFace candidates re-ranked per probe. Defaults to 20.
        recall_probes (int, optional): probes scored against the whole gallery for
            ``shortlist_recall``; 0 = skip, None = every probe. Defaults to 1000.
        combine_weights (Sequence[float]): ``(w_adaface, w_qaconv)``. Defaults to
            ``(0.5, 0.5)`` (OAML report).
        chunk_size (int, optional): probes per cosine block. Defaults to None: as many as
            keep a block at about 4M probe-gallery scores.
        qaconv_chunk (int): pairs per ``match_pairs`` call. Defaults to 512 (about 100 MB of
            float32 maps at 512x7x7).
        role_key (str): metainfo key of the role. Defaults to ``'role'``.
        collect_device (str): ``'cpu'``: gather over a gloo group; ``'gpu'``: over the
            default process group. Defaults to ``'cpu'``.
        prefix (str, optional): set name of the keys. Defaults to None.
        gather_chunk (int): entries each rank sends per gathering round. Defaults to 512
            (about 26 MB of float16 512x7x7 maps).

    Examples:
        >>> test_evaluator = dict(type='FaceIdentificationMetric', shortlist_k=20,
        ...                       fpir=(0.01, 0.1))
    """

    matcher_methods = ('match', 'match_pairs')

    def __init__(self,
                 topk: Sequence[int] = (1, 5),
                 fpir: Sequence[float] = (0.01, 0.1),
                 score_types: Sequence[str] = SCORE_TYPES,
                 shortlist_k: int = 20,
                 recall_probes: Optional[int] = 1000,
                 combine_weights: Sequence[float] = (0.5, 0.5),
                 chunk_size: Optional[int] = None,
                 qaconv_chunk: int = 512,
                 role_key: str = 'role',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 gather_chunk: int = 512) -> None:
        super().__init__(gather_chunk=gather_chunk, collect_device=collect_device, prefix=prefix)
        self.score_types = self.check_score_types(score_types, SCORE_TYPES)
        self.shortlist_k = self._check_int('shortlist_k', shortlist_k)
        if chunk_size is not None:
            self._check_int('chunk_size', chunk_size)
        self.qaconv_chunk = self._check_int('qaconv_chunk', qaconv_chunk)
        if recall_probes is not None:
            self._check_int('recall_probes', recall_probes, minimum=0)
        ranks = tuple(topk)
        if not ranks or not all(isinstance(r, int) and 1 <= r <= shortlist_k for r in ranks):
            raise ValueError(f'topk must hold ranks in [1, shortlist_k={shortlist_k}] (QAConv '
                             f'only ranks the shortlist), got {topk}')
        self.topk = ranks
        self.fpir = self._check_rates('fpir', fpir, allow_empty=True)
        self.combine_weights = self._check_combine_weights(combine_weights)
        self.recall_probes = recall_probes
        self.chunk_size = chunk_size
        self.role_key = role_key
        self._needs_qaconv = bool({'qaconv', 'combined'} & set(self.score_types))

    def make_entry(self, sample: dict) -> dict:
        """Role, identity, embedding and (for QAConv) the map and its visibility."""
        index = self.sample_index(sample)
        role = sample.get(self.role_key)
        if role not in ROLES:
            raise KeyError(f'{type(self).__name__}: sample {index} needs the metainfo '
                           f"'{self.role_key}' set to 'gallery' or 'probe', got {role!r} (add "
                           f"'{self.role_key}' to the data infos and to PackFaceInputs' "
                           'meta_keys)')
        label = sample.get(GT_LABEL)
        if label is None or torch.as_tensor(label).numel() != 1:
            raise KeyError(f'{type(self).__name__}: sample {index} needs a single {GT_LABEL} '
                           f'(identity), got {label!r}')
        entry = dict(
            sample_idx=index, gallery=role == 'gallery', label=int(torch.as_tensor(label).item()))
        entry[EMBEDDING] = self.read_embedding(sample, index)
        if self._needs_qaconv:
            feature_map = self.read_feature_map(sample, index)
            entry[FEATURE_MAP] = feature_map
            vis = self.read_visibility(sample, index, tuple(feature_map.shape[1:]))
            if vis is not None:
                entry[VISIBILITY] = vis
        return entry

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Search every probe in the gallery and evaluate each score type.

        ``results`` are the entries of :meth:`process` (any order, duplicates allowed); the
        result maps ``<score type>/<name>`` and the set's counts to Python numbers.
        """
        entries = unique_by_index(results)
        use_vis = all_or_none(entries, VISIBILITY, type(self).__name__)
        gallery = [e for e in entries if e['gallery']]
        probes = [e for e in entries if not e['gallery']]
        if not gallery or not probes:
            raise ValueError(f'{type(self).__name__}: needs gallery and probe images, got '
                             f'{len(gallery)} gallery and {len(probes)} probe images')
        gallery_labels = np.array([e['label'] for e in gallery], dtype=np.int64)
        probe_labels = np.array([e['label'] for e in probes], dtype=np.int64)
        k = min(self.shortlist_k, len(gallery))
        outcomes, candidates, cosines = self._cosine_search(
            torch.stack([e[EMBEDDING] for e in probes]),
            torch.stack([e[EMBEDDING] for e in gallery]), gallery_labels, probe_labels, k)
        metrics: Dict[str, float] = dict(
            num_gallery=len(gallery),
            num_identities=int(np.unique(gallery_labels).size),
            num_probes=len(probes),
            num_mated=int(np.count_nonzero(outcomes.mated)),
            num_non_mated=int(np.count_nonzero(~outcomes.mated)),
            shortlist_k=k)
        by_type = {'adaface': outcomes}
        if self._needs_qaconv:
            sides = gallery, probes, use_vis
            qaconv = self._rerank(*sides, candidates)
            by_type['qaconv'] = search_outcome(qaconv, gallery_labels, probe_labels, candidates)
            if 'combined' in self.score_types:
                w_ada, w_qa = self.combine_weights
                fused = w_ada * standardise(cosines) + w_qa * standardise(qaconv)
                by_type['combined'] = search_outcome(fused, gallery_labels, probe_labels,
                                                     candidates)
            if self.recall_probes != 0:
                chosen = _spread(len(probes), self.recall_probes)
                top1 = self._full_qaconv_top1(*sides, chosen)
                metrics['qaconv/shortlist_recall'] = shortlist_recall(candidates[chosen], top1)
                metrics['qaconv/recall_probes'] = int(chosen.size)
        open_set = bool(self.fpir) and metrics['num_non_mated'] > 0
        if self.fpir and not open_set:
            print_log(f'{type(self).__name__}: no non-mated probe (closed set); TPIR@FPIR is '
                      'not reported', logger='current')
        for score_type in self.score_types:
            outcome = by_type[score_type]
            for r, rate in cmc_rates(outcome, self.topk).items():
                metrics[f'{score_type}/rank-{r}'] = rate
            if open_set:
                for point in tpir_at_fpir(outcome, self.fpir):
                    metrics[f'{score_type}/tpir@fpir={point.fpir_target:g}'] = point.tpir
        return metrics

    def _cosine_search(self, probe: torch.Tensor, gallery: torch.Tensor,
                       gallery_labels: np.ndarray, probe_labels: np.ndarray,
                       k: int) -> Tuple[SearchOutcome, np.ndarray, np.ndarray]:
        """AdaFace outcome over the whole gallery, and each probe's top-``k`` shortlist."""
        outcomes, candidates, cosines = [], [], []
        step = self.chunk_size or max(1, _COSINE_BLOCK_SCORES // gallery.shape[0])
        for start in range(0, probe.shape[0], step):
            block = slice(start, start + step)
            scores = probe[block] @ gallery.t()
            outcomes.append(search_outcome(scores.numpy(), gallery_labels, probe_labels[block]))
            values, index = scores.topk(k, dim=1)
            candidates.append(index.numpy())
            cosines.append(values.double().numpy())
        return (concatenate_outcomes(outcomes), np.concatenate(candidates),
                np.concatenate(cosines))

    def _rerank(self, gallery: List[dict], probes: List[dict], use_vis: bool,
                candidates: np.ndarray) -> np.ndarray:
        """``[P, k]`` QAConv scores of each probe against its shortlisted gallery images."""
        matcher, device = self.bound_matcher(self.score_types)
        num_probes, k = candidates.shape
        probes_per_call = max(1, self.qaconv_chunk // k)
        scores = []
        with eval_mode(matcher), torch.no_grad():
            for start in range(0, num_probes, probes_per_call):
                stop = min(start + probes_per_call, num_probes)
                rows = np.repeat(np.arange(start, stop), k)
                columns = candidates[start:stop].reshape(-1)
                scores.append(
                    matcher.match_pairs(
                        stack_field(probes, FEATURE_MAP, device, rows),
                        stack_field(gallery, FEATURE_MAP, device, columns),
                        stack_field(probes, VISIBILITY, device, rows) if use_vis else None,
                        stack_field(gallery, VISIBILITY, device, columns) if use_vis else None,
                    ).float().cpu())
        return torch.cat(scores).double().numpy().reshape(num_probes, k)

    def _full_qaconv_top1(self, gallery: List[dict], probes: List[dict], use_vis: bool,
                          chosen: np.ndarray) -> np.ndarray:
        """Index of the best gallery image by QAConv over the whole gallery, per chosen probe."""
        matcher, device = self.bound_matcher(self.score_types)
        probe = stack_field(probes, FEATURE_MAP, device, chosen)
        probe_vis = stack_field(probes, VISIBILITY, device, chosen) if use_vis else None
        # match() normalises its whole gallery argument in float32, so feed it in blocks.
        step = max(1, _GALLERY_BLOCK_BYTES // (4 * probe[0].numel()))
        best = torch.full((len(chosen), ), -math.inf)
        best_index = torch.zeros(len(chosen), dtype=torch.long)
        with eval_mode(matcher), torch.no_grad():
            for start in range(0, len(gallery), step):
                block = range(start, min(start + step, len(gallery)))
                scores = matcher.match(
                    probe, stack_field(gallery, FEATURE_MAP, device, block), probe_vis,
                    stack_field(gallery, VISIBILITY, device, block) if use_vis else None).cpu()
                value, index = scores.max(dim=1)
                better = value > best
                best = torch.where(better, value, best)
                best_index = torch.where(better, index + start, best_index)
        return best_index.numpy()


def _spread(n: int, count: Optional[int]) -> np.ndarray:
    """``count`` evenly spaced indices of ``range(n)`` (all when None or ``>= n``)."""
    if count is None or count >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))

