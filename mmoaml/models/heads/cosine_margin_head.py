"""Common base of the margin-softmax heads: class kernel, cosines, margin on the target column."""
from abc import abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample

from mmoaml.structures import stack_labels
from ..builder import build_component
from ..checks import checkable_without_sync

#: The margin heads' loss: softmax cross-entropy over the margin logits (MMPretrain's loss).
DEFAULT_MARGIN_LOSS = dict(type='CrossEntropyLoss', loss_weight=1.0)


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

    **As a head** (MMPretrain's ``ClsHead`` contract): :meth:`loss` takes the neck's output
    ``feats = (embedding [B, D], norm [B, 1])`` (``FaceEmbeddingNeck``) and the data samples'
    ``gt_label`` and returns ``{'loss': loss_weight * CE(margin logits)}``; :meth:`predict`
    writes ``pred_score`` (softmax of the scaled cosines, no margin) and ``pred_label``. So a
    margin head can serve as the head of an ``mmpretrain.ImageClassifier``.

    Args:
        embed_dim (int): Embedding size ``D``. Defaults to 512.
        num_classes (int): Number of identities. Defaults to 70,722 (the reference constructor
            default, the MS1MV2 ablation subset).
        m (float, optional): Margin. Defaults to None: the head's :attr:`default_m`.
        s (float): Logit scale. Defaults to 64 (ArcFace, CosFace, AdaFace).
        eps (float): Cosine clamp margin. Defaults to 1e-4 (AdaFace ``head.py``).
        loss (dict): Config of the loss on the margin logits, with its ``loss_weight``.
            Defaults to ``dict(type='CrossEntropyLoss', loss_weight=1.0)`` (MMPretrain's).
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. The default
            (None) keeps the reference initialisation done at construction.
    """

    #: The margin ``m`` of the head's paper, used when ``m`` is None.
    default_m: float

    def __init__(self,
                 embed_dim: int = 512,
                 num_classes: int = 70722,
                 m: Optional[float] = None,
                 s: float = 64.,
                 eps: float = 1e-4,
                 loss: dict = DEFAULT_MARGIN_LOSS,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dim <= 0 or num_classes <= 0:
            raise ValueError(f'embed_dim and num_classes must be positive, got {embed_dim} and '
                             f'{num_classes}')
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.m = self.default_m if m is None else m
        self.s = s
        self.eps = eps
        self.kernel = nn.Parameter(torch.empty(embed_dim, num_classes))
        self.loss_module = build_component(loss, f'{type(self).__name__}: loss')
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

    def loss(self, feats: Tuple[torch.Tensor, torch.Tensor], data_samples: Sequence[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Weighted margin loss of a batch.

        Args:
            feats (tuple[Tensor, Tensor]): ``(embedding [B, D], norm [B, 1])`` from the neck.
            data_samples (Sequence[DataSample]): ``gt_label`` of each image.
            **kwargs: Passed on to the loss module.

        Returns:
            dict[str, Tensor]: ``loss`` (scalar, weighted by the loss config).
        """
        embedding, norm = self._unpack(feats)
        labels = stack_labels(data_samples, embedding.shape[0])
        logits = self(embedding, norm, labels.to(embedding.device))
        return dict(loss=self.loss_module(logits, labels.to(logits.device), **kwargs))

    def predict(self,
                feats: Tuple[torch.Tensor, torch.Tensor],
                data_samples: Optional[Sequence[Optional[DataSample]]] = None
                ) -> List[DataSample]:
        """Class scores without margin (``softmax(s * cos)``) and the predicted class.

        Args:
            feats (tuple[Tensor, Tensor]): ``(embedding [B, D], norm [B, 1])`` from the neck.
            data_samples (Sequence[DataSample | None], optional): Updated in place; created
                where None.

        Returns:
            list[DataSample]: with ``pred_score`` ``[num_classes]`` and ``pred_label``.
        """
        embedding, _ = self._unpack(feats)
        scores = F.softmax(self.cosine(embedding) * self.s, dim=1)
        labels = scores.argmax(dim=1, keepdim=True).detach()
        samples = list(data_samples) if data_samples is not None else [None] * len(scores)
        out = []
        for sample, score, label in zip(samples, scores, labels):
            sample = DataSample() if sample is None else sample
            out.append(sample.set_pred_score(score).set_pred_label(label))
        return out

    @staticmethod
    def _unpack(feats) -> Tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(feats, (tuple, list)) and len(feats) == 2):
            raise TypeError('a margin head reads the neck output (embedding [B, D], norm [B, 1]) '
                            f'(FaceEmbeddingNeck), got {type(feats).__name__}')
        return feats[0], feats[1]

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
        # A data-dependent check: only where it forces no device synchronisation.
        if batch and checkable_without_sync(labels) and (labels.min() < 0
                                                          or labels.max() >= self.num_classes):
            raise ValueError(f'{name}: labels must lie in [0, {self.num_classes}), got range '
                             f'[{int(labels.min())}, {int(labels.max())}]')
        if norm is not None and norm.shape != (batch, 1):
            raise ValueError(f'{name}: norm must be [{batch}, 1], got {list(norm.shape)}')
