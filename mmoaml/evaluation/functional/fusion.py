"""Score fusion: label-free standardisation that puts different score types on one scale.

Pure numpy. A cosine lives in ``[-1, 1]`` and a QAConv logit is unbounded, so a weighted sum of
raw scores would be dominated by the wider one; after :func:`standardise` a weight means "share
of the spread".
"""
import numpy as np


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
