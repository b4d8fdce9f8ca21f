"""QAConv pairwise matching loss: binary cross-entropy over every pair of a batch."""
import torch
import torch.nn.functional as F

from mmoaml.registry import MODELS
from .batch_hard import batch_hard_scores, check_score_matrix, same_identity
from .weighted_loss import ScoreMatrixLoss


@MODELS.register_module()
class PairwiseMatchingLoss(ScoreMatrixLoss):
    """In-batch pairwise matching loss of QAConv-GS (ShengcaiLiao/QAConv, version 2.0 and
    later, ``PairwiseMatchingLoss``; Liao and Shao, "Graph Sampling Based Deep Metric Learning
    for Generalizable Person Re-Identification", CVPR 2022, https://arxiv.org/abs/2104.01546).

    ``loss = mean_i sum_j BCEWithLogits(scores[i, j], [labels[i] == labels[j]])``: the
    ``[B, B]`` score matrix of a batch against itself is treated as logits of "same identity",
    summed over the gallery axis per anchor and averaged over anchors, as in the reference.

    The diagonal (self-pairs, target 1) is included, as in the reference: in train mode the
    self-pairs are part of the BN statistics of the QAConv scores anyway, and excluding them would
    leave an anchor without positives (K = 1) with only negative targets.

    Examples:
        >>> import torch
        >>> from mmoaml.models import PairwiseMatchingLoss
        >>> loss = PairwiseMatchingLoss()
        >>> scores, labels = torch.randn(4, 4), torch.tensor([0, 0, 1, 1])
        >>> loss(scores, labels).shape
        torch.Size([])
        >>> # config: dict(type='PairwiseMatchingLoss', loss_weight=1.0)

    Args:
        loss_weight (float): Factor of the returned loss. Defaults to 1.0.
    """

    def unweighted(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = same_identity(labels).to(scores.dtype)
        per_pair = F.binary_cross_entropy_with_logits(scores, target, reduction='none')
        return per_pair.sum(dim=1).mean()

    @torch.no_grad()
    def accuracy(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Fraction of anchors whose hardest positive beats their hardest negative.

        Hardest positive = lowest score against another sample of the same identity (self
        excluded); hardest negative = highest score against another identity; an anchor is
        correct when the first is strictly greater. Anchors without a positive or without a
        negative are left out.

        Args:
            scores (Tensor): ``[B, B]``.
            labels (Tensor): ``[B]``.

        Returns:
            Tensor: scalar in ``[0, 1]``; NaN when no anchor has both a positive and a negative.
        """
        check_score_matrix(scores, labels, type(self).__name__)
        hard = batch_hard_scores(scores, labels)
        valid = hard.has_positive & hard.has_negative
        correct = (hard.positive > hard.negative)[valid]
        return correct.float().mean()
