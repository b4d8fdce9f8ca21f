"""Occlusion head: per-location visibility of a backbone feature map."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS
from mmoaml.structures import stack_gt_visibility
from ..builder import build_component


@MODELS.register_module()
class OcclusionHead(BaseModule):
    """Predict a visibility map ``[B, 1, h, w]`` in ``[0, 1]`` (1 = visible face) from a map.

    conv3x3(C -> mid, padding 1, no bias) -> BatchNorm2d(mid) -> ReLU -> conv1x1(mid -> 1, with
    bias) -> sigmoid, at the resolution of the input map, as in the OAML report (590,209
    parameters for C = 512, mid = 128). It is supervised with ground-truth masks brought to the
    map grid by area averaging (:class:`OcclusionLoss`, :meth:`loss`); its output feeds
    :meth:`QAConvHead.match` as visibility.

    Args:
        in_channels (int): Channels ``C`` of the input map. Defaults to 512 (IR body map; 256 for
            the 14x14 stage-3 map).
        mid_channels (int): Hidden channels. Defaults to 128 (OAML report).
        loss (dict): Config of the supervision, with its ``loss_weight`` (> 0). Defaults to
            ``dict(type='OcclusionLoss', loss_weight=1.0)``.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config. Defaults to None
            (torch's default initialisation of the layers).

    Examples:
        >>> import torch
        >>> from mmoaml.models import OcclusionHead
        >>> head = OcclusionHead(in_channels=512)
        >>> tuple(head(torch.randn(2, 512, 7, 7)).shape)
        (2, 1, 7, 7)
        >>> # config: dict(type='OcclusionHead', in_channels=512, mid_channels=128)
    """

    def __init__(self,
                 in_channels: int = 512,
                 mid_channels: int = 128,
                 loss: dict = dict(type='OcclusionLoss', loss_weight=1.0),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels <= 0 or mid_channels <= 0:
            raise ValueError('in_channels and mid_channels must be positive, got '
                             f'{in_channels} and {mid_channels}')
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(mid_channels)
        self.relu = nn.ReLU(inplace=True)
        self.out_conv = nn.Conv2d(mid_channels, 1, 1)
        self.loss_module = build_component(loss, 'OcclusionHead: loss')
        if not getattr(self.loss_module, 'loss_weight', 1.0) > 0:
            # The unweighted MSE is logged as loss / loss_weight; an unsupervised head is
            # configured by not calling loss() (OAML: occlusion_supervision=None).
            raise ValueError('OcclusionHead: loss.loss_weight must be > 0, got '
                             f'{self.loss_module.loss_weight!r}')

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Visibility probabilities.

        Args:
            feature_map (Tensor): ``[B, in_channels, h, w]``.

        Returns:
            Tensor: ``[B, 1, h, w]`` in ``[0, 1]``, 1 = visible face.
        """
        if feature_map.dim() != 4 or feature_map.shape[1] != self.in_channels:
            raise ValueError(f'OcclusionHead expects a map [B, {self.in_channels}, h, w], got '
                             f'{list(feature_map.shape)}')
        x = self.relu(self.bn(self.conv(feature_map)))
        return torch.sigmoid(self.out_conv(x))

    def loss(self, feature_map: torch.Tensor,
             data_samples: Sequence[DataSample]) -> Dict[str, torch.Tensor]:
        """Supervise the visibility predicted from ``feature_map``.

        Args:
            feature_map (Tensor): ``[B, in_channels, h, w]`` (detached by the caller when the
                loss must not reach the backbone).
            data_samples (Sequence[DataSample]): ``gt_visibility`` ``[1, H, W]`` per image.

        Returns:
            dict[str, Tensor]: see :meth:`loss_by_visibility`.
        """
        visibility = self(feature_map)
        gt = stack_gt_visibility(data_samples, feature_map.shape[0])
        return self.loss_by_visibility(visibility, gt.to(visibility.device))

    def loss_by_visibility(self, visibility: torch.Tensor,
                           gt_visibility: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss of predicted visibility maps against ground-truth pixel masks.

        Args:
            visibility (Tensor): ``[B, 1, h, w]`` output of this head.
            gt_visibility (Tensor): ``[B, 1, H, W]`` pixel masks (1 = visible face).

        Returns:
            dict[str, Tensor]: ``loss_occlusion`` (weighted) and the unweighted ``occ_mse``
            (detached, for the log).
        """
        loss = self.loss_module(visibility, gt_visibility)
        weight = getattr(self.loss_module, 'loss_weight', 1.0)
        return dict(loss_occlusion=loss, occ_mse=loss.detach() / weight)
