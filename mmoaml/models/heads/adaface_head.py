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

    Deliberate deviations from the reference, all in the EMA update of step 2 (the maths is the
    reference's whenever every norm of the batch is finite and there are at least two):

    - samples whose *raw* norm is not finite (NaN, or +-inf from a float16/bfloat16 overflow)
      are left out of ``mean(n)`` and ``std(n)``. The reference would clip an infinite norm to 100
      and feed it in, and a NaN norm (or an empty batch, whose mean is NaN) would turn the
      buffers, and every later logit, into NaN for good. Such samples still get their margin
      (an infinite norm counts as 100 there, as in the reference; a NaN norm gives NaN logits,
      so the loss is non-finite and the optimizer wrapper skips the update);
    - ``batch_mean`` is left unchanged when no norm is finite, ``batch_std`` when fewer than two
      are (the unbiased std of one value is NaN).

    The update is computed with tensor ops on a finite mask, so it costs no host-device
    synchronisation. Under DDP each rank updates its buffers from its local batch (as in the
    reference); MMEngine's default buffer broadcast then makes rank 0's values win.

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
            self._update_norm_statistics(torch.isfinite(norm.detach()), safe_norm)
        z = (self.h * (safe_norm - self.batch_mean) / (self.batch_std + self.eps)).clamp(-1, 1)
        theta = torch.acos(target_cos)
        theta = (theta - self.m * z).clamp(self.eps, math.pi - self.eps)
        return torch.cos(theta) - (self.m + self.m * z)

    @torch.no_grad()
    def _update_norm_statistics(self, finite: torch.Tensor, safe_norm: torch.Tensor) -> None:
        """EMA update from the samples whose raw norm is finite (``finite``: bool, [B, 1]).

        Masked sums instead of ``mean()``/``std()`` and ``torch.where`` instead of an ``if``:
        no value is read on the host, so a CUDA step does not wait here.
        """
        valid = finite.reshape(-1)
        values = safe_norm.reshape(-1).masked_fill(~valid, 0)
        count = valid.sum()
        mean = values.sum() / count.clamp(min=1)
        deviation = (values - mean).masked_fill(~valid, 0)
        std = (deviation.square().sum() / (count - 1).clamp(min=1)).sqrt()
        a = self.t_alpha
        self.batch_mean.copy_(
            torch.where(count > 0, self.batch_mean * (1 - a) + a * mean, self.batch_mean))
        self.batch_std.copy_(
            torch.where(count > 1, self.batch_std * (1 - a) + a * std, self.batch_std))
