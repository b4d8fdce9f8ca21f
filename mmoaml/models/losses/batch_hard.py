"""Batch-hard mining on an in-batch score matrix (higher score = more similar)."""
from typing import NamedTuple

import torch


class BatchHardScores(NamedTuple):
    """Per-anchor hardest positive and negative scores of a ``[B, B]`` score matrix.

    Attributes:
        positive (Tensor): ``[B]`` lowest score against another sample of the same identity
            (``+inf`` where the anchor has none).
        negative (Tensor): ``[B]`` highest score against a sample of another identity (``-inf``
            where the batch has none).
        has_positive (Tensor): ``[B]`` bool, the anchor has another sample of its identity.
        has_negative (Tensor): ``[B]`` bool, the batch holds another identity.
    """
    positive: torch.Tensor
    negative: torch.Tensor
    has_positive: torch.Tensor
    has_negative: torch.Tensor


def check_score_matrix(scores: torch.Tensor, labels: torch.Tensor, owner: str) -> None:
    """Raise a ValueError naming ``owner`` unless ``scores`` is ``[B, B]``, ``labels`` ``[B]``."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f'{owner}: scores must be a square [B, B] matrix, got '
                         f'{list(scores.shape)}')
    if labels.shape != (scores.shape[0], ):
        raise ValueError(f'{owner}: labels must be [{scores.shape[0]}], got {list(labels.shape)}')
    if labels.dtype.is_floating_point:
        raise ValueError(f'{owner}: labels must be integer identities, got {labels.dtype}')


def same_identity(labels: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` bool, ``labels[i] == labels[j]`` (diagonal included)."""
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def batch_hard_scores(scores: torch.Tensor, labels: torch.Tensor) -> BatchHardScores:
    """Hardest positive (self excluded) and hardest negative of each anchor (row).

    Args:
        scores (Tensor): ``[B, B]`` scores, row ``i`` = anchor ``i`` against every sample.
        labels (Tensor): ``[B]`` identities.

    Returns:
        BatchHardScores: differentiable ``positive``/``negative`` (gradient reaches the selected
        entries) and the masks of anchors for which they exist.
    """
    same = same_identity(labels)
    positive_mask = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative_mask = ~same
    positive = scores.masked_fill(~positive_mask, float('inf')).amin(dim=1)
    negative = scores.masked_fill(~negative_mask, float('-inf')).amax(dim=1)
    return BatchHardScores(positive, negative, positive_mask.any(dim=1),
                           negative_mask.any(dim=1))
