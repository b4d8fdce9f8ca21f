"""Score fusion: label-free standardisation that puts different score types on one scale.

Pure numpy. A cosine lives in ``[-1, 1]`` and a QAConv logit is unbounded, so a weighted sum of
raw scores would be dominated by the wider one; after :func:`standardise` a weight means "share
of the spread".

:func:`choose_fusion_weight` picks the weight of the fused score on validation pairs.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .verification import verification_accuracy


def standardise(scores: np.ndarray) -> np.ndarray:
    """Z-score ``scores`` over all their elements: subtract the mean, divide by the population
    standard deviation.

    It uses no labels, so a fold protocol built on the fused scores stays free of label
    leakage; it is transductive (the statistics include every score given, held-out folds
    too).

    Args:
        scores (np.ndarray): Scores of any shape, e.g. ``[N]`` pair scores or ``[P, k]``
            shortlist scores.

    Returns:
        np.ndarray: Same shape, mean 0 and standard deviation 1; all zeros when the scores are
        constant (their spread carries no information to weigh).
    """
    scores = np.asarray(scores)
    std = scores.std()
    centred = scores - scores.mean()
    return centred / std if std > 0 else centred


def fused_scores(adaface: np.ndarray, qaconv: np.ndarray, w_adaface: float,
                 w_qaconv: Optional[float] = None) -> np.ndarray:
    """``w_adaface * z(adaface) + w_qaconv * z(qaconv)`` with :func:`standardise` as ``z``;
    ``w_qaconv`` defaults to ``1 - w_adaface``."""
    if w_qaconv is None:
        w_qaconv = 1.0 - w_adaface
    return w_adaface * standardise(adaface) + w_qaconv * standardise(qaconv)


def choose_fusion_weight(score_sets: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                         grid: Sequence[float] = tuple(k / 10 for k in range(11)),
                         nfolds: int = 10) -> Tuple[float, Dict[float, float]]:
    """The AdaFace weight ``w`` of :func:`fused_scores` with the best mean verification
    accuracy over validation sets (pairs that the reported test must not include).

    The grid holds 0 and 1 by default, so on the validation sets the fusion is never worse than
    its better branch; ties go to the weight nearest 0.5 (the report's equal weights).

    Args:
        score_sets (Sequence[tuple]): ``(adaface [N], qaconv [N], issame [N])`` per set.
        grid (Sequence[float]): Candidate weights in ``[0, 1]``. Defaults to 0, 0.1, ..., 1.
        nfolds (int): Folds of :func:`verification_accuracy`. Defaults to 10.

    Returns:
        tuple[float, dict]: The chosen ``w`` and the mean accuracy of every candidate.
    """
    if not score_sets:
        raise ValueError('choose_fusion_weight needs at least one validation set')
    if not all(0.0 <= w <= 1.0 for w in grid) or not len(grid):
        raise ValueError(f'fusion weights must lie in [0, 1], got {list(grid)}')
    mean_accuracy = {}
    for w in grid:
        accuracies = [verification_accuracy(fused_scores(a, q, w), issame, nfolds)[0]
                      for a, q, issame in score_sets]
        mean_accuracy[float(w)] = float(np.mean(accuracies))
    best = max(mean_accuracy.values())
    chosen = min((w for w, acc in mean_accuracy.items() if acc == best),
                 key=lambda w: abs(w - 0.5))
    return chosen, mean_accuracy
