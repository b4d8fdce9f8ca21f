"""1:N identification protocol on probe-vs-gallery scores: CMC ranks and TPIR at FPIR.

Pure numpy. Protocol (closed and open set, as in IJB-B/C 1:N and NIST FRVT reporting):

* The gallery holds images with identity labels; an identity may have several images. A probe
  is **mated** when its identity has at least one gallery image, **non-mated** otherwise.
* A probe's score for a gallery *identity* is the maximum of its scores against that
  identity's images (higher = more similar). Scores can be given for every gallery image
  (dense ``[P, G]``) or for a per-probe candidate list (a shortlist: ``[P, k]`` scores with the
  ``[P, k]`` gallery indices they belong to); identities without a scored image are ranked
  below every scored one.
* **Rank** of a mated probe: 1 + the number of *other* identities scoring at least as high as
  its own identity (ties count against the probe, so a tie at the top is a miss). A mate that
  was not scored at all (outside the shortlist) gets rank ``num_identities + 1``: missed at
  every rank.
* **CMC / rank-k** (closed set): the fraction of mated probes of rank ``<= k``. Non-mated
  probes do not enter.
* **TPIR at FPIR** (open set): a threshold ``t`` is set on the non-mated probes' best identity
  scores so that at most ``FPIR * num_non_mated`` of them exceed it (the ``(k+1)``-th highest,
  ``k = floor(FPIR * n)``, as :func:`~mmoaml.evaluation.functional.verification.tar_at_far`
  does for impostors); TPIR is the fraction of mated probes whose own identity is at rank 1
  *and* scores above ``t``. ``1 - TPIR`` is the rank-1 FNIR of NIST FRVT.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from .verification import threshold_at_rate

# Issued by ``threshold_at_rate`` when an FPIR target allows no false positive.
_FPIR_ZERO_WARNING = ('FPIR={rate:g} with {n} non-mated probes allows {expected:.3g} false '
                      'positives: the threshold is the highest non-mated score (TPIR at zero '
                      'false positives)')

__all__ = [
    'SearchOutcome', 'TpirAtFpir', 'search_outcome', 'concatenate_outcomes', 'cmc_rates',
    'tpir_at_fpir', 'shortlist_recall'
]


class SearchOutcome(NamedTuple):
    """What the identification metrics need of each probe's search (all arrays ``[P]``).

    Attributes:
        mated (np.ndarray): bool, the probe's identity has a gallery image.
        mate_rank (np.ndarray): int64, rank of the probe's own identity (module docstring);
            0 for non-mated probes, ``num_identities + 1`` when the mate was not scored.
        mate_score (np.ndarray): float64, the own identity's score; ``-inf`` for non-mated
            probes and unscored mates.
        top_score (np.ndarray): float64, the best identity score of the probe.
        top_label (np.ndarray): int64, the label of that identity (the first candidate in
            column order on ties).
    """
    mated: np.ndarray
    mate_rank: np.ndarray
    mate_score: np.ndarray
    top_score: np.ndarray
    top_label: np.ndarray


class TpirAtFpir(NamedTuple):
    """One open-set operating point of :func:`tpir_at_fpir`.

    Attributes:
        fpir_target (float): The requested false positive identification rate.
        tpir (float): True positive identification rate at ``threshold``.
        threshold (float): Score threshold; a search "hits" iff its best score ``> threshold``.
        num_non_mated (int): Number of non-mated probes.
        achieved_fpir (float): FPIR actually reached (``<= fpir_target``).
    """
    fpir_target: float
    tpir: float
    threshold: float
    num_non_mated: int
    achieved_fpir: float


def _labels(labels, name: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f'{name} must be a 1-D integer array, got {a.dtype} {a.shape}')
    return a.astype(np.int64)


def search_outcome(scores,
                   gallery_labels,
                   probe_labels,
                   candidates: Optional[np.ndarray] = None) -> SearchOutcome:
    """Rank every probe's own identity among the gallery identities.

    Args:
        scores (array-like): ``[P, G]`` scores against every gallery image, or ``[P, k]``
            scores of the candidates given by ``candidates``; finite, higher = more similar.
        gallery_labels (array-like): ``[G]`` integer identity of each gallery image (the whole
            gallery, also when ``candidates`` is given).
        probe_labels (array-like): ``[P]`` integer identity of each probe.
        candidates (np.ndarray, optional): ``[P, k]`` gallery indices of the scored images per
            probe (distinct within a row). Defaults to None (dense scores).

    Returns:
        SearchOutcome: per probe; see the module docstring for the rank definition.
    """
    s = np.asarray(scores, dtype=np.float64)
    gallery = _labels(gallery_labels, 'gallery_labels')
    probe = _labels(probe_labels, 'probe_labels')
    if s.ndim != 2 or s.shape[0] != probe.size:
        raise ValueError(f'scores must be [P, G] or [P, k] with P = {probe.size} probes, got '
                         f'{s.shape}')
    if s.shape[1] == 0 or gallery.size == 0:
        raise ValueError('search_outcome needs at least one gallery image and one candidate')
    if not np.isfinite(s).all():
        raise ValueError(f'scores contains {int((~np.isfinite(s)).sum())} non-finite values')
    if candidates is None:
        if s.shape[1] != gallery.size:
            raise ValueError(f'dense scores must have one column per gallery image '
                             f'({gallery.size}), got {s.shape[1]}')
        labels = np.broadcast_to(gallery, s.shape)
    else:
        idx = np.asarray(candidates)
        if idx.shape != s.shape or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f'candidates must be integer indices of the shape of scores '
                             f'{s.shape}, got {idx.dtype} {idx.shape}')
        if idx.min() < 0 or idx.max() >= gallery.size:
            raise ValueError(f'candidates must index the {gallery.size} gallery images, got '
                             f'indices in [{idx.min()}, {idx.max()}]')
        labels = gallery[idx]
    identities = np.unique(gallery)
    mated = np.isin(probe, identities)
    own = labels == probe[:, None]
    mate_score = np.where(own, s, -np.inf).max(axis=1)
    # Identities other than the probe's that reach the mate's score: distinct labels among the
    # other candidates scoring >= mate_score (an identity's max reaches it iff one image does).
    reaching = np.where(~own & (s >= mate_score[:, None]), labels, np.iinfo(np.int64).max)
    reaching = np.sort(reaching, axis=1)
    valid = reaching != np.iinfo(np.int64).max
    first = np.ones_like(valid)
    first[:, 1:] = reaching[:, 1:] != reaching[:, :-1]
    rank = 1 + np.count_nonzero(valid & first, axis=1)
    rank = np.where(np.isneginf(mate_score), identities.size + 1, rank)
    best = s.argmax(axis=1)
    rows = np.arange(s.shape[0])
    return SearchOutcome(
        mated=mated,
        mate_rank=np.where(mated, rank, 0).astype(np.int64),
        mate_score=mate_score,
        top_score=s[rows, best],
        top_label=labels[rows, best].astype(np.int64))


def concatenate_outcomes(parts: Sequence[SearchOutcome]) -> SearchOutcome:
    """Join the outcomes of consecutive probe blocks (a chunked search) into one."""
    if not parts:
        raise ValueError('concatenate_outcomes needs at least one part')
    return SearchOutcome(*(np.concatenate(field) for field in zip(*parts)))


def _mated_count(outcome: SearchOutcome, caller: str) -> int:
    n = int(np.count_nonzero(outcome.mated))
    if n == 0:
        raise ValueError(f'{caller} needs at least one mated probe (a probe whose identity is in '
                         'the gallery)')
    return n


def cmc_rates(outcome: SearchOutcome, ranks: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """Closed-set identification rates: the fraction of mated probes of rank ``<= r``.

    Args:
        outcome (SearchOutcome): from :func:`search_outcome`.
        ranks (Sequence[int]): the ranks ``r >= 1``. Defaults to ``(1, 5)``.

    Returns:
        dict[int, float]: ``r`` -> rate.
    """
    n = _mated_count(outcome, 'cmc_rates')
    mate_rank = outcome.mate_rank[outcome.mated]
    rates = {}
    for r in ranks:
        if not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f'ranks must be integers >= 1, got {r!r}')
        rates[int(r)] = float(np.count_nonzero(mate_rank <= r) / n)
    return rates


def tpir_at_fpir(outcome: SearchOutcome, fpirs: Sequence[float] = (1e-2, )) -> List[TpirAtFpir]:
    """Open-set true positive identification rate at fixed false positive identification rates.

    With ``n`` non-mated probes, FPIR ``f`` allows ``k = floor(f * n)`` of them to score above
    the threshold, which is therefore their ``(k+1)``-th highest best score (fewer exceed it
    when scores tie there); when ``k >= n`` it is ``-inf`` and TPIR is the rank-1 rate. When
    ``f * n < 1`` the threshold is the highest non-mated score and a warning says the point is
    really "TPIR at zero false positives".

    Args:
        outcome (SearchOutcome): from :func:`search_outcome`; needs mated and non-mated probes.
        fpirs (Sequence[float]): targets in ``(0, 1]``. Defaults to ``(1e-2,)``.

    Returns:
        list[TpirAtFpir]: one point per target.
    """
    num_mated = _mated_count(outcome, 'tpir_at_fpir')
    non_mated = np.sort(outcome.top_score[~outcome.mated])[::-1]
    n = non_mated.size
    if n == 0:
        raise ValueError('tpir_at_fpir needs non-mated probes (identities absent from the '
                         'gallery); the set is closed')
    hit_score = outcome.mate_score[outcome.mated & (outcome.mate_rank == 1)]
    points = []
    for fpir in fpirs:
        fpir = float(fpir)
        # Allowing every non-mated probe leaves no constraint: TPIR is then the rank-1 rate.
        threshold = threshold_at_rate(non_mated, fpir, 'FPIR', _FPIR_ZERO_WARNING, -np.inf)
        points.append(
            TpirAtFpir(fpir, float(np.count_nonzero(hit_score > threshold) / num_mated),
                       float(threshold), int(n), float(np.mean(non_mated > threshold))))
    return points


def shortlist_recall(candidates, reference_top1) -> float:
    """Fraction of probes whose reference top-1 gallery image is in their shortlist.

    Used to check a cheap shortlist (AdaFace cosine top-k) against an expensive full ranking
    (QAConv over the whole gallery): with recall 1 the re-ranked shortlist has the same top-1
    image as the full ranking.

    Args:
        candidates (array-like): ``[P, k]`` gallery indices of each probe's shortlist.
        reference_top1 (array-like): ``[P]`` gallery index ranked first by the reference.

    Returns:
        float: the recall in ``[0, 1]``.
    """
    c = np.asarray(candidates)
    r = np.asarray(reference_top1)
    if c.ndim != 2 or r.shape != (c.shape[0], ) or c.shape[0] == 0:
        raise ValueError(f'candidates must be [P, k] and reference_top1 [P] with P > 0, got '
                         f'{c.shape} and {r.shape}')
    return float(np.mean((c == r[:, None]).any(axis=1)))
