"""Common base of the margin-softmax heads: class kernel, cosines, margin on the target column."""
from abc import abstractmethod
from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule


class CosineMarginHead(BaseModule):
    """Cosine classifier whose target-class cosine is replaced by a margin-penalised one.

    Shared by :class:`AdaFaceHead`, :class:`ArcFaceHead` and :class:`CosFaceHead`
    (mk-minchul/AdaFace ``head.py``). The class kernel is a parameter ``kernel`` of shape
    ``[embed_dim, num_classes]`` (features x classes, the reference layout, so reference
    checkpoints load without transposition), initialised uniform(-1, 1) with every column then
    scaled to unit norm (the reference does ``renorm(2, 1, 1e-5).mul(1e5)``, the same up to
    rounding). The forward pass computes ``cos[i, j] = <e_i, W_j / ||W_j||>`` clamped to
    ``[-1 + eps, 1 - eps]`` (so ``acos`` and its gradient stay finite), lets the subclass map each
    sample's target cosine ``cos[i, y_i]`` to its penalised value, and returns
    ``s * cos`` with that column replaced.

    Deviations from the reference, all numerically neutral:

    - the embedding is L2-normalised again (the reference assumes a unit input; for the
      neck's unit embeddings this changes only rounding, and it makes the cosine a cosine
      whatever the caller passes);
    - non-target columns are left as they are; the reference passes every column through
      ``cos(clip(acos(.)))``, which for non-target columns changes only rounding because the
      clamp already keeps ``acos`` inside ``[eps, pi - eps]``;
    - the margin arithmetic runs in float32 even when the matrix product runs in half
      precision under autocast (as insightface's margin losses do).

    Args:
        embed_dim (int): Embedding size ``D``.
        num_classes (int): Number of identities.
        s (float): Logit scale.
        eps (float): Cosine clamp margin.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. The default
            (None) keeps the reference initialisation done at construction.
    """

    def __init__(self,
                 embed_dim: int,
                 num_classes: int,
                 s: float,
                 eps: float,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dim <= 0 or num_classes <= 0:
            raise ValueError(f'embed_dim and num_classes must be positive, got {embed_dim} and '
                             f'{num_classes}')
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.s = s
        self.eps = eps
        self.kernel = nn.Parameter(torch.empty(embed_dim, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1, 1) kernel with unit-norm columns (reference initialisation)."""
        with torch.no_grad():
            self.kernel.uniform_(-1.0, 1.0)
            self.kernel.div_(torch.linalg.vector_norm(self.kernel, dim=0, keepdim=True))

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """Clamped cosines between embeddings and class centres.

        Args:
            embedding (Tensor): ``[B, D]``.

        Returns:
            Tensor: float32 ``[B, num_classes]`` in ``[-1 + eps, 1 - eps]``.
        """
        weight = F.normalize(self.kernel, dim=0)
        cos = F.normalize(embedding, dim=1) @ weight
        return cos.float().clamp(-1.0 + self.eps, 1.0 - self.eps)

    @abstractmethod
    def margin_target(self, target_cos: torch.Tensor,
                      norm: Optional[torch.Tensor]) -> torch.Tensor:
        """Map each sample's target cosine ``[B, 1]`` to its penalised value ``[B, 1]``.

        ``norm`` is the ``[B, 1]`` feature norm passed to :meth:`forward` (None allowed where the
        head does not read it).
        """

    def forward(self, embedding: torch.Tensor, norm: Optional[torch.Tensor],
                labels: torch.Tensor) -> torch.Tensor:
        """Margin-penalised scaled cosine logits.

        Args:
            embedding (Tensor): ``[B, D]`` embeddings (unit norm from the neck).
            norm (Tensor | None): ``[B, 1]`` feature norms before normalisation.
            labels (Tensor): ``[B]`` integer class indices in ``[0, num_classes)``.

        Returns:
            Tensor: float32 logits ``[B, num_classes]``; the target column carries the margin.
        """
        self._check_inputs(embedding, norm, labels)
        cos = self.cosine(embedding)
        index = labels.long().unsqueeze(1)
        target = self.margin_target(cos.gather(1, index), norm)
        return cos.scatter(1, index, target) * self.s

    def _check_inputs(self, embedding: torch.Tensor, norm: Optional[torch.Tensor],
                      labels: torch.Tensor) -> None:
        name = type(self).__name__
        if embedding.dim() != 2 or embedding.shape[1] != self.embed_dim:
            raise ValueError(f'{name}: embedding must be [B, {self.embed_dim}], got '
                             f'{list(embedding.shape)}')
        batch = embedding.shape[0]
        if labels.shape != (batch, ):
            raise ValueError(f'{name}: labels must be [{batch}], got {list(labels.shape)}')
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f'{name}: labels must be an integer tensor, got {labels.dtype}')
        if batch and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f'{name}: labels must lie in [0, {self.num_classes}), got range '
                             f'[{int(labels.min())}, {int(labels.max())}]')
        if norm is not None and norm.shape != (batch, 1):
            raise ValueError(f'{name}: norm must be [{batch}, 1], got {list(norm.shape)}')
