"""ArcFace: additive angular margin on the target class."""
import math
from typing import List, Optional, Union

import torch

from mmoaml.registry import MODELS
from .cosine_margin_head import DEFAULT_MARGIN_LOSS, CosineMarginHead


@MODELS.register_module()
class ArcFaceHead(CosineMarginHead):
    """ArcFace margin head (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", CVPR 2019, https://arxiv.org/abs/1801.07698), as in mk-minchul/AdaFace
    ``head.py``.

    Target logit ``s * cos(clip(theta + m, eps, pi - eps))``, other logits ``s * cos``. As in that
    reference there is no "easy margin" or threshold fallback: the clip to ``pi - eps`` replaces
    it. ``norm`` is accepted for a common call signature with :class:`AdaFaceHead` and unused.
    Kernel layout, initialisation and reference deviations: :class:`CosineMarginHead`.

    Args:
        embed_dim (int): Embedding size. Defaults to 512.
        num_classes (int): Number of identities. Defaults to 70,722 (reference default).
        m (float): Angular margin in radians. Defaults to 0.5 (ArcFace).
        s (float): Logit scale. Defaults to 64 (ArcFace).
        eps (float): Cosine clamp and angle clip margin. Defaults to 1e-4 (AdaFace ``head.py``).
        loss (dict): Loss on the margin logits, with its ``loss_weight``. Defaults to
            ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. Defaults to None.

    Examples:
        >>> # config: dict(type='ArcFaceHead', embed_dim=512, num_classes=10572)
    """

    def __init__(self,
                 embed_dim: int = 512,
                 num_classes: int = 70722,
                 m: float = 0.5,
                 s: float = 64.,
                 eps: float = 1e-4,
                 loss: dict = DEFAULT_MARGIN_LOSS,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(embed_dim, num_classes, s=s, eps=eps, loss=loss, init_cfg=init_cfg)
        self.m = m

    def margin_target(self, target_cos: torch.Tensor,
                      norm: Optional[torch.Tensor]) -> torch.Tensor:
        theta = (torch.acos(target_cos) + self.m).clamp(self.eps, math.pi - self.eps)
        return torch.cos(theta)
