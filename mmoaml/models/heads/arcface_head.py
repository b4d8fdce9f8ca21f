"""ArcFace: additive angular margin on the target class."""
import math
from typing import Optional

import torch

from mmoaml.registry import MODELS
from .cosine_margin_head import CosineMarginHead


@MODELS.register_module()
class ArcFaceHead(CosineMarginHead):
    """ArcFace margin head (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", CVPR 2019, https://arxiv.org/abs/1801.07698), as in mk-minchul/AdaFace
    ``head.py``.

    Target logit ``s * cos(clip(theta + m, eps, pi - eps))``, other logits ``s * cos``. As in that
    reference there is no "easy margin" or threshold fallback: the clip to ``pi - eps`` replaces
    it. ``norm`` is accepted for a common call signature with :class:`AdaFaceHead` and unused.
    Kernel layout, initialisation and reference deviations: :class:`CosineMarginHead`.

    Arguments and defaults are :class:`CosineMarginHead`'s, with ``m = 0.5`` (ArcFace); in a
    config: ``dict(type='ArcFaceHead', embed_dim=512, num_classes=10572)``.
    """

    default_m = 0.5

    def margin_target(self, target_cos: torch.Tensor,
                      norm: Optional[torch.Tensor]) -> torch.Tensor:
        theta = (torch.acos(target_cos) + self.m).clamp(self.eps, math.pi - self.eps)
        return torch.cos(theta)
