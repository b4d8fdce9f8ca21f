"""CosFace: additive cosine margin on the target class."""
from typing import Optional

import torch

from mmoaml.registry import MODELS
from .cosine_margin_head import CosineMarginHead


@MODELS.register_module()
class CosFaceHead(CosineMarginHead):
    """CosFace margin head (Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
    Recognition", CVPR 2018, https://arxiv.org/abs/1801.09414), as in mk-minchul/AdaFace
    ``head.py``.

    Target logit ``s * (cos - m)``, other logits ``s * cos``. ``norm`` is accepted for a common
    call signature with :class:`AdaFaceHead` and unused. Kernel layout, initialisation and
    reference deviations: :class:`CosineMarginHead`.

    Arguments and defaults are :class:`CosineMarginHead`'s, with ``m = 0.4`` (CosFace); in a
    config: ``dict(type='CosFaceHead', embed_dim=512, num_classes=10572)``.
    """

    default_m = 0.4

    def margin_target(self, target_cos: torch.Tensor,
                      norm: Optional[torch.Tensor]) -> torch.Tensor:
        return target_cos - self.m
