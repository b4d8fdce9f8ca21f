"""Identity classification from QAConv scores plus a batch-hard margin ranking term."""
from typing import Dict

import torch
import torch.nn.functional as F

from mmoaml.registry import MODELS
from .batch_hard import batch_hard_scores, check_score_matrix
from .weighted_loss import ScoreMatrixLoss


@MODELS.register_module()
class SoftmaxTripletLoss(ScoreMatrixLoss):
    """Softmax over the batch identities + batch-hard triplet loss on a QAConv score matrix.

    The OAML report combines a cross-entropy on "QAConv logits" with
    ``MarginRankingLoss(hardest positive, hardest negative, margin=1.0)`` weighted 0.5. Both
    parts are computed from the ``[B, B]`` in-batch scores and both are in the returned loss::

        loss = loss_cls + triplet_weight * loss_triplet

    - ``loss_cls``: for anchor ``i`` and each identity ``k`` present in the batch, the logit is
      the **mean** QAConv score of ``i`` against the samples of ``k``, self excluded; the loss is
      the cross-entropy of these logits against ``i``'s identity. This makes the classification
      well posed (the predecessor scored class embeddings that never included the true class).
      Mean rather than log-sum-exp pooling: the true identity has ``K - 1`` other samples and the
      others ``K``, and log-sum-exp grows with the count (``+log n``), which would bias every
      anchor against its own identity; the mean also gives every positive a gradient, while the
      triplet term below already concentrates on the hardest pairs.
    - ``loss_triplet``: ``max(0, margin - (min_pos - max_neg))`` per anchor, where ``min_pos``
      is the lowest score against another sample of the same identity (self excluded) and
      ``max_neg`` the highest score against another identity (QAConv 2.1 ``TripletLoss``,
      ShengcaiLiao/QAConv, with the OAML margin 1.0 instead of QAConv's 16).

    Both terms are averaged over the anchors that have at least one positive and one negative;
    anchors of an identity with a single sample in the batch (or a batch with a single identity)
    are left out of both. When no anchor qualifies the loss is an exact zero that is still
    connected to ``scores`` (so every parameter receives a (zero) gradient, as DDP expects).

    Args:
        margin (float): Triplet margin. Defaults to 1.0 (OAML report).
        triplet_weight (float): Weight of the triplet term. Defaults to 0.5 (OAML report).
        loss_weight (float): Factor of the returned loss (both terms). Defaults to 1.0.

    Examples:
        >>> import torch
        >>> from mmoaml.models import SoftmaxTripletLoss
        >>> loss = SoftmaxTripletLoss()
        >>> scores, labels = torch.randn(4, 4), torch.tensor([0, 0, 1, 1])
        >>> sorted(loss.components(scores, labels))
        ['loss_cls', 'loss_triplet']
        >>> # config: dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5)
    """

    def __init__(self,
                 margin: float = 1.0,
                 triplet_weight: float = 0.5,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.margin = margin
        self.triplet_weight = triplet_weight

    def unweighted(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``loss_cls + triplet_weight * loss_triplet``."""
        parts = self.components(scores, labels)
        return parts['loss_cls'] + self.triplet_weight * parts['loss_triplet']

    def components(self, scores: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The two unweighted terms, for logging.

        Args:
            scores (Tensor): ``[B, B]``.
            labels (Tensor): ``[B]``.

        Returns:
            dict[str, Tensor]: scalar ``loss_cls`` and ``loss_triplet``.
        """
        check_score_matrix(scores, labels, type(self).__name__)
        hard = batch_hard_scores(scores, labels)
        valid = hard.has_positive & hard.has_negative
        count = valid.sum().clamp_min(1)

        identities, target = torch.unique(labels, return_inverse=True)
        members = F.one_hot(target, len(identities)).to(scores.dtype)  # [B, K]
        others = 1.0 - torch.eye(len(labels), dtype=scores.dtype, device=scores.device)
        pooled = (scores * others) @ members  # sum over each identity's other samples
        counts = others @ members
        logits = pooled / counts.clamp_min(1.0)
        per_anchor_cls = F.cross_entropy(logits, target, reduction='none')
        loss_cls = torch.where(valid, per_anchor_cls, 0.0).sum() / count

        gap = torch.where(valid, hard.positive - hard.negative, 0.0)
        per_anchor_triplet = F.relu(self.margin - gap)
        loss_triplet = torch.where(valid, per_anchor_triplet, 0.0).sum() / count
        return dict(loss_cls=loss_cls, loss_triplet=loss_triplet)
