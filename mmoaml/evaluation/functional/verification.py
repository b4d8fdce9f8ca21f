"""Face verification protocol on pair scores: k-fold accuracy, TAR@FAR, ROC AUC and EER.

Pure numpy. Every function takes one score per pair (higher = more similar) and the pair labels
(``True`` = same identity) and predicts "same" iff ``score > threshold``.
"""
import math
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

# Squared-L2 thresholds of the standard protocol (AdaFace evaluate_utils.py, after facenet):
# 0.00, 0.01, ..., 3.99 (400 values), "same" iff distance < threshold.
L2_THRESHOLDS = np.arange(0, 4, 0.01)

# Relative slack on ``rate * count`` so that representation error (0.29 * 100 =
# 28.999999999999996) does not cost one allowed false accept.
_RATE_SLACK = 1e-9
# Issued by ``threshold_at_rate`` when a FAR target allows no false accept.
_FAR_ZERO_WARNING = ('FAR={rate:g} with {n} impostor pairs allows {expected:.3g} false accepts: '
                     'the threshold is the highest impostor score (TAR at zero false accepts)')


def allowed_false_accepts(rate: float, count: int) -> int:
    """Largest number of false accepts among ``count`` impostor trials at a false-accept rate.

    ``floor(rate * count)``, computed with a relative slack of 1e-9 so that a rate that is
    exact in decimal (0.29 of 100) is not rounded down by binary representation error.
    Used by :func:`threshold_at_rate`.
    """
    return math.floor(rate * count * (1 + _RATE_SLACK))


def threshold_at_rate(negatives: np.ndarray, rate: float, rate_name: str, zero_warning: str,
                      below_all: float) -> float:
    """Score threshold that at most ``k = floor(rate * n)`` of ``n`` negative scores exceed.

    The ``(k+1)``-th highest negative score (fewer exceed it when scores tie there). Shared by
    :func:`tar_at_far` (impostor pairs) and the identification FPIR operating points (non-mated
    probes).

    Args:
        negatives (np.ndarray): ``[n]`` negative scores sorted in descending order, ``n >= 1``.
        rate (float): the target rate in ``(0, 1]``.
        rate_name (str): the rate's name in the error message, e.g. ``'FAR'``.
        zero_warning (str): warning issued when ``rate * n < 1`` (no false accept allowed); a
            :meth:`str.format` template with the fields ``rate``, ``n`` and ``expected``
            (``rate * n``).
        below_all (float): the threshold when every negative may score above it.

    Returns:
        float: the threshold.
    """
    if not 0 < rate <= 1:
        raise ValueError(f'{rate_name} targets must lie in (0, 1], got {rate}')
    n = negatives.size
    allowed = allowed_false_accepts(rate, n)
    if allowed == 0:
        # stacklevel 3: blame the code that called the public metric, not the metric itself.
        warnings.warn(zero_warning.format(rate=rate, n=n, expected=rate * n), stacklevel=3)
    return negatives[allowed] if allowed < n else below_all


class TarAtFar(NamedTuple):
    """One operating point of :func:`tar_at_far`.

    Attributes:
        far_target (float): The requested false accept rate.
        tar (float): True accept rate at ``threshold``.
        threshold (float): Score threshold; "same" iff ``score > threshold``.
        num_impostors (int): Number of impostor (different-identity) pairs.
        achieved_far (float): False accept rate actually reached (``<= far_target``).
    """
    far_target: float
    tar: float
    threshold: float
    num_impostors: int
    achieved_far: float


def _check_pairs(scores, issame) -> Tuple[np.ndarray, np.ndarray]:
    """Validate and convert to float64 ``[N]`` scores and bool ``[N]`` labels."""
    s = np.asarray(scores)
    y = np.asarray(issame)
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise ValueError('scores and issame must be 1-D of equal length, got shapes '
                         f'{s.shape} and {y.shape}')
    if s.size == 0:
        raise ValueError('scores is empty: no pairs to evaluate')
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f'scores contains {int((~np.isfinite(s)).sum())} non-finite values')
    if y.dtype != np.bool_ and not np.isin(y, (0, 1)).all():
        raise ValueError('issame must hold booleans (or 0/1)')
    return s, y.astype(bool)


def contiguous_folds(num_pairs: int, nfolds: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Split ``range(num_pairs)`` into ``nfolds`` contiguous folds.

    Same splits as scikit-learn's ``KFold(n_splits=nfolds, shuffle=False)``, which the standard
    protocol uses: the first ``num_pairs % nfolds`` folds hold one pair more than the others.

    Args:
        num_pairs (int): Number of pairs ``N``.
        nfolds (int): Number of folds, ``2 <= nfolds <= N``.

    Returns:
        list[tuple[np.ndarray, np.ndarray]]: ``(train_indices, test_indices)`` per fold.
    """
    if not isinstance(nfolds, (int, np.integer)) or nfolds < 2:
        raise ValueError(f'nfolds must be an integer >= 2, got {nfolds!r}')
    if nfolds > num_pairs:
        raise ValueError(f'nfolds={nfolds} exceeds the number of pairs ({num_pairs})')
    sizes = np.full(nfolds, num_pairs // nfolds)
    sizes[:num_pairs % nfolds] += 1
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    indices = np.arange(num_pairs)
    return [(np.concatenate((indices[:start], indices[stop:])), indices[start:stop])
            for start, stop in zip(bounds[:-1], bounds[1:])]


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Ascending thresholds that realise every distinct split of ``scores``.

    One threshold below the minimum (all "same"), the midpoints between consecutive distinct
    scores (a held-out score between two training scores is then classified by the nearer
    one), and the maximum (all "different").
    """
    unique = np.unique(scores)
    low, high = unique[:-1], unique[1:]
    mid = low + (high - low) / 2
    # For adjacent floats the midpoint may round up to ``high``; ``low`` makes the same split.
    mid = np.where(mid < high, mid, low)
    return np.concatenate(([np.nextafter(unique[0], -np.inf)], mid, unique[-1:]))


def _num_correct(scores: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Correct predictions (``score > t`` for same, ``<= t`` for different) per threshold."""
    pos = np.sort(scores[issame])
    neg = np.sort(scores[~issame])
    true_accepts = pos.size - np.searchsorted(pos, thresholds, side='right')
    true_rejects = np.searchsorted(neg, thresholds, side='right')
    return true_accepts + true_rejects


def verification_accuracy(scores: Sequence[float],
                          issame: Sequence[bool],
                          nfolds: int = 10,
                          thresholds: Optional[Sequence[float]] = None
                          ) -> Tuple[float, float, float]:
    """k-fold verification accuracy with the threshold chosen on the other folds.

    The standard LFW protocol (facenet / InsightFace / AdaFace): the pairs are split into
    ``nfolds`` contiguous folds (:func:`contiguous_folds`); for each fold, the threshold with the
    best accuracy on the other folds is applied to the held-out fold. Ties between thresholds go
    to the first one in ``thresholds`` order (``np.argmax``), i.e. to the lowest threshold for
    the default ascending candidates.

    Args:
        scores (Sequence[float]): ``[N]`` pair scores, higher = more similar.
        issame (Sequence[bool]): ``[N]`` pair labels, True = same identity.
        nfolds (int): Number of folds. Defaults to 10 (standard protocol).
        thresholds (Sequence[float], optional): Candidate thresholds in score units, in
            tie-break order. Defaults to None: for each fold the candidates of
            its training pairs (below the minimum, midpoints between consecutive distinct
            scores, the maximum), ascending, so that any score scale works.

    Returns:
        tuple[float, float, float]: Mean and (population) standard deviation of the held-out
        fold accuracies, and the mean of the chosen thresholds.
    """
    s, y = _check_pairs(scores, issame)
    fixed = None if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    if fixed is not None and fixed.size == 0:
        raise ValueError('thresholds is empty')
    accuracies, chosen = [], []
    for train, test in contiguous_folds(s.size, nfolds):
        candidates = _candidate_thresholds(s[train]) if fixed is None else fixed
        best = candidates[np.argmax(_num_correct(s[train], y[train], candidates))]
        accuracies.append(np.count_nonzero((s[test] > best) == y[test]) / test.size)
        chosen.append(best)
    accuracies = np.asarray(accuracies)
    return float(accuracies.mean()), float(accuracies.std()), float(np.mean(chosen))


def verification_accuracy_l2(embeddings1: np.ndarray,
                             embeddings2: np.ndarray,
                             issame: Sequence[bool],
                             nfolds: int = 10) -> Tuple[float, float, float]:
    """The standard protocol on embeddings, reproducing its numbers exactly.

    Distance ``d = ||e1 - e2||^2`` per pair (computed in the embeddings' dtype, as the
    reference does), thresholds :data:`L2_THRESHOLDS` (0.00 to 3.99 in steps of 0.01), "same"
    iff ``d < threshold``, lowest threshold on ties, 10 contiguous folds (AdaFace
    ``evaluate_utils.evaluate`` with ``pca=0``). For unit embeddings ``d = 2 - 2 cos``.

    Args:
        embeddings1 (np.ndarray): ``[N, D]`` first image of each pair (flip-fused, unit norm).
        embeddings2 (np.ndarray): ``[N, D]`` second image of each pair.
        issame (Sequence[bool]): ``[N]`` pair labels.
        nfolds (int): Number of folds. Defaults to 10.

    Returns:
        tuple[float, float, float]: Mean and std of the fold accuracies, and the mean chosen
        threshold as a squared-L2 distance (the reference's ``best_threshold``).
    """
    e1, e2 = np.asarray(embeddings1), np.asarray(embeddings2)
    if e1.ndim != 2 or e1.shape != e2.shape:
        raise ValueError('embeddings1 and embeddings2 must be [N, D] of equal shape, got '
                         f'{e1.shape} and {e2.shape}')
    dist = np.sum(np.square(np.subtract(e1, e2)), 1)
    # "d < t" is "-d > -t"; negating the grid keeps its order, so ties still go to the lowest
    # distance threshold, and the negated mean threshold is exact (rounding is symmetric).
    accuracy, std, threshold = verification_accuracy(-dist, issame, nfolds, -L2_THRESHOLDS)
    return accuracy, std, -threshold


def tar_at_far(scores: Sequence[float],
               issame: Sequence[bool],
               fars: Sequence[float] = (1e-3, )) -> List[TarAtFar]:
    """True accept rate at fixed false accept rates.

    With ``n`` impostor pairs, FAR ``f`` allows ``k = floor(f * n)`` false accepts; the threshold
    is the ``(k+1)``-th highest impostor score, so at most ``k`` impostors score above it (fewer
    when impostor scores tie there). When ``f * n < 1`` no false accept is allowed and the
    result is really "TAR at zero false accepts" (e.g. FAR=1e-4 on LFW's 3,000 impostor pairs);
    a warning says so.

    Args:
        scores (Sequence[float]): ``[N]`` pair scores, higher = more similar.
        issame (Sequence[bool]): ``[N]`` pair labels.
        fars (Sequence[float]): Target false accept rates in ``(0, 1]``. Defaults to
            ``(1e-3,)``.

    Returns:
        list[TarAtFar]: ``(far_target, tar, threshold, num_impostors, achieved_far)`` per target.
    """
    s, y = _check_pairs(scores, issame)
    genuine, impostor = s[y], np.sort(s[~y])[::-1]
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError('tar_at_far needs both genuine and impostor pairs, got '
                         f'{genuine.size} and {impostor.size}')
    n = impostor.size
    # Allowing every impostor: just below the lowest score, so that every pair is accepted.
    below_all = np.nextafter(impostor[-1], -np.inf)
    points = []
    for far in fars:
        far = float(far)
        threshold = threshold_at_rate(impostor, far, 'FAR', _FAR_ZERO_WARNING, below_all)
        points.append(
            TarAtFar(far, float(np.mean(genuine > threshold)), float(threshold), int(n),
                     float(np.mean(impostor > threshold))))
    return points


def roc_curve(scores: Sequence[float], issame: Sequence[bool]) -> Tuple[np.ndarray, np.ndarray]:
    """ROC points over all thresholds.

    Args:
        scores (Sequence[float]): ``[N]`` pair scores, higher = more similar.
        issame (Sequence[bool]): ``[N]`` pair labels, both classes present.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``fpr`` and ``tpr``, each ``[K+1]`` for ``K`` distinct
        scores, from ``(0, 0)`` (nothing accepted) to ``(1, 1)``; point ``j`` accepts every pair
        scoring at least the ``j``-th highest distinct score, so tied genuine and impostor
        scores enter together (a diagonal step).
    """
    s, y = _check_pairs(scores, issame)
    num_pos = np.count_nonzero(y)
    if num_pos == 0 or num_pos == y.size:
        raise ValueError('roc_curve needs both genuine and impostor pairs')
    order = np.argsort(-s, kind='stable')
    s, y = s[order], y[order]
    last_of_value = np.append(np.flatnonzero(np.diff(s)), s.size - 1)
    tp = np.cumsum(y)[last_of_value]
    fp = (last_of_value + 1) - tp
    tpr = np.concatenate(([0.0], tp / num_pos))
    fpr = np.concatenate(([0.0], fp / (y.size - num_pos)))
    return fpr, tpr


def roc_auc(scores: Sequence[float], issame: Sequence[bool]) -> float:
    """Area under the ROC curve (trapezoidal rule over :func:`roc_curve`).

    Equals the probability that a random genuine pair outscores a random impostor pair, ties
    counting one half.
    """
    fpr, tpr = roc_curve(scores, issame)
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(scores: Sequence[float], issame: Sequence[bool]) -> float:
    """Equal error rate: where the false accept and false reject rates cross.

    Found on the ROC polyline of :func:`roc_curve`, interpolating linearly on the segment where
    ``FRR - FAR`` changes sign (both rates are linear along a segment, so they are equal there).
    """
    fpr, tpr = roc_curve(scores, issame)
    gap = (1.0 - tpr) - fpr  # FRR - FAR: +1 at the first point, -1 at the last, non-increasing
    j = int(np.argmax(gap <= 0))
    alpha = gap[j - 1] / (gap[j - 1] - gap[j])
    return float(fpr[j - 1] + alpha * (fpr[j] - fpr[j - 1]))
