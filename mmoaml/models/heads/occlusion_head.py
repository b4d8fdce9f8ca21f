"""Occlusion head: per-location visibility of a backbone feature map."""
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmoaml.registry import MODELS


@MODELS.register_module()
class OcclusionHead(BaseModule):
    """Predict a visibility map ``[B, 1, h, w]`` in ``[0, 1]`` (1 = visible face) from a map.

    conv3x3(C -> mid, padding 1, no bias) -> BatchNorm2d(mid) -> ReLU -> conv1x1(mid -> 1, with
    bias) -> sigmoid, at the resolution of the input map, as in the OAML report (590,209
    parameters for C = 512, mid = 128). It is supervised with ground-truth masks brought to the
    map grid by area averaging (:class:`OcclusionLoss`); its output feeds
    :meth:`QAConvHead.match` as visibility.

    Args:
        in_channels (int): Channels ``C`` of the input map. Defaults to 512 (IR body map; 256 for
            the 14x14 stage-3 map).
        mid_channels (int): Hidden channels. Defaults to 128 (OAML report).
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
