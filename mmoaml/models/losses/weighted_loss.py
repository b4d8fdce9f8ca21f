"""Common bases of mmoaml's losses: a loss weight in the loss config, checked inputs."""
from abc import abstractmethod

import torch
import torch.nn as nn

from .batch_hard import check_score_matrix


class WeightedLoss(nn.Module):
    """A loss returned times ``loss_weight`` (the weight lives in the loss config, as in
    MMPretrain). Subclasses define :meth:`unweighted`.

    Args:
        loss_weight (float): Factor of the returned loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        """``loss_weight * unweighted(*args)``, a scalar."""
        return self.loss_weight * self.unweighted(*args)

    @abstractmethod
    def unweighted(self, *args: torch.Tensor) -> torch.Tensor:
        """The loss before ``loss_weight``."""


class ScoreMatrixLoss(WeightedLoss):
    """A loss of the ``[B, B]`` QAConv scores of a batch matched against itself (row = anchor)
    and the ``[B]`` integer identities; the shapes are checked, naming the subclass."""

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_score_matrix(scores, labels, type(self).__name__)
        return super().forward(scores, labels)
