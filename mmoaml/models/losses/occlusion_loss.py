"""Supervision of the occlusion head: MSE against area-averaged ground-truth masks."""
import torch
import torch.nn.functional as F

from mmoaml.registry import MODELS
from mmoaml.structures import area_downsample
from .weighted_loss import WeightedLoss


@MODELS.register_module()
class OcclusionLoss(WeightedLoss):
    """Mean squared error between a predicted visibility map and the ground-truth pixel mask.

    The pixel mask (1 = visible face, 0 = occluder or not face) is brought to the prediction's
    grid with :func:`mmoaml.structures.area_downsample`, so each target cell is the visible fraction
    of its image region (the predecessor's bilinear resize point-sampled the mask instead).

    Examples:
        >>> import torch
        >>> from mmoaml.models import OcclusionLoss
        >>> pred, gt = torch.rand(2, 1, 7, 7), torch.ones(2, 1, 112, 112)
        >>> OcclusionLoss()(pred, gt).shape
        torch.Size([])
        >>> # config: dict(type='OcclusionLoss', loss_weight=1.0)

    Args:
        loss_weight (float): Factor of the returned loss. Defaults to 1.0.
    """

    def unweighted(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): ``[B, 1, h, w]`` predicted visibility in ``[0, 1]``.
            gt (Tensor): ``[B, 1, H, W]`` or ``[B, H, W]`` ground-truth pixel visibility.

        Returns:
            Tensor: scalar mean over all ``B * h * w`` cells (``forward`` multiplies it by
            ``loss_weight``).
        """
        if pred.dim() != 4 or pred.shape[1] != 1:
            raise ValueError(f'OcclusionLoss: pred must be [B, 1, h, w], got {list(pred.shape)}')
        if gt.dim() not in (3, 4) or gt.shape[0] != pred.shape[0] or (gt.dim() == 4
                                                                     and gt.shape[1] != 1):
            raise ValueError(f'OcclusionLoss: gt must be [{pred.shape[0]}, 1, H, W] or '
                             f'[{pred.shape[0]}, H, W], got {list(gt.shape)}')
        target = area_downsample(gt, tuple(pred.shape[-2:])).to(pred)
        return F.mse_loss(pred, target)
