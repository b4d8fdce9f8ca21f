"""AdaFace: quality-adaptive angular + additive margin driven by the feature norm."""
import math
from typing import List, Optional, Union

import torch

from mmoaml.registry import MODELS
from .cosine_margin_head import DEFAULT_MARGIN_LOSS, CosineMarginHead


@MODELS.register_module()
class AdaFaceHead(CosineMarginHead):
    """AdaFace margin head (Kim et al., "AdaFace: Quality Adaptive Margin for Face Recognition",
    CVPR 2022, https://arxiv.org/abs/2204.00964; reference mk-minchul/AdaFace ``head.py``).

    For sample ``i`` with feature norm ``n_i`` and target cosine ``cos_i = cos(theta_i)``:

    1. ``n_i`` is clipped to ``[0.001, 100]`` and detached (no gradient flows into the norm);
    2. in training mode the EMA buffers are updated from the batch *before* they are used:
       ``batch_mean <- t_alpha * mean(n) + (1 - t_alpha) * batch_mean`` and the same for
       ``batch_std`` with the unbiased standard deviation of ``n`` (divide by ``B - 1``);
    3. ``z_i = clip(h * (n_i - batch_mean) / (batch_std + eps), -1, 1)``;
    4. target logit ``s * (cos(clip(theta_i - m * z_i, eps, pi - eps)) - (m + m * z_i))``;
       every other logit is ``s * cos``.

    ``z = -1`` (low-quality, small norm) gives an ArcFace-like angular margin, ``z = 0`` CosFace,
    ``z = +1`` a shrunk angle with additive margin ``2m``. Eval mode reads the buffers without
    updating them.

    Deliberate deviation from the reference: with a batch of one sample the unbiased standard
    deviation is NaN, which in the reference turns ``batch_std`` (and every later logit) into NaN
    for good. Here ``batch_std`` is left unchanged when the batch has fewer than two samples;
    ``batch_mean`` is still updated. Under DDP each rank updates its buffers from its local batch
    (as in the reference); MMEngine's default buffer broadcast then makes rank 0's values win.

    The common kernel/cosine logic and its reference deviations are described in
    :class:`CosineMarginHead`. Reference checkpoints also hold an unused zero buffer ``t``;
    it has no counterpart here.

    Args:
        embed_dim (int): Embedding size. Defaults to 512 (AdaFace).
        num_classes (int): Number of identities, e.g. 10,572 for CASIA-WebFace. Defaults to
            70,722 (the reference constructor default, the MS1MV2 ablation subset).
        m (float): Margin. Defaults to 0.4 (AdaFace MS1MV2 scripts).
        h (float): Norm-to-margin concentration. Defaults to 0.333 (AdaFace MS1MV2 scripts).
        s (float): Logit scale. Defaults to 64 (AdaFace).
        t_alpha (float): EMA rate of the norm statistics. Defaults to 0.01 (AdaFace training
            config; the class default there is 1.0).
        eps (float): Cosine clamp and angle clip margin, and the stabiliser of ``z``.
            Defaults to 1e-3 (AdaFace).
        loss (dict): Loss on the margin logits, with its ``loss_weight``. Defaults to
            ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. Defaults to None
            (reference initialisation at construction).

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from mmoaml.models import AdaFaceHead
        >>> head = AdaFaceHead(embed_dim=8, num_classes=5)
        >>> emb = F.normalize(torch.randn(4, 8), dim=1)
        >>> logits = head(emb, torch.rand(4, 1) * 30, torch.tensor([0, 1, 2, 3]))
        >>> tuple(logits.shape), tuple(head.batch_mean.shape)
        ((4, 5), (1,))
        >>> # config: dict(type='AdaFaceHead', embed_dim=512, num_classes=10572)
    """

    default_m = 0.4

    def __init__(self,
                 embed_dim: int = 512,
                 num_classes: int = 70722,
                 m: float = 0.4,
                 h: float = 0.333,
                 s: float = 64.,
                 t_alpha: float = 0.01,
                 eps: float = 1e-3,
                 loss: dict = DEFAULT_MARGIN_LOSS,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(embed_dim, num_classes, m=m, s=s, eps=eps, loss=loss, init_cfg=init_cfg)
        self.h = h
        self.t_alpha = t_alpha
        self.register_buffer('batch_mean', torch.full((1, ), 20.0))
        self.register_buffer('batch_std', torch.full((1, ), 100.0))

    def margin_target(self, target_cos: torch.Tensor,
                      norm: Optional[torch.Tensor]) -> torch.Tensor:
        if norm is None:
            raise ValueError('AdaFaceHead needs the feature norms [B, 1]; got None')
        safe_norm = norm.detach().float().clamp(0.001, 100.0)
        if self.training:
            self._update_norm_statistics(safe_norm)
        z = (self.h * (safe_norm - self.batch_mean) / (self.batch_std + self.eps)).clamp(-1, 1)
        theta = torch.acos(target_cos)
        theta = (theta - self.m * z).clamp(self.eps, math.pi - self.eps)
        return torch.cos(theta) - (self.m + self.m * z)

    @torch.no_grad()
    def _update_norm_statistics(self, safe_norm: torch.Tensor) -> None:
        a = self.t_alpha
        self.batch_mean.mul_(1 - a).add_(a * safe_norm.mean())
        if safe_norm.numel() > 1:
            self.batch_std.mul_(1 - a).add_(a * safe_norm.std())
