"""Resampling of pixel visibility masks to a feature-map grid."""
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F


def area_downsample(mask: Union[torch.Tensor, np.ndarray],
                    size: Tuple[int, int]) -> torch.Tensor:
    """Average a pixel visibility mask over the cells of an ``size`` = ``(h, w)`` grid.

    Each output cell is the fraction of visible pixels in its image region (area averaging);
    bilinear resizing would point-sample instead (a predecessor defect). When the image side is
    not a multiple of the grid side, cells follow ``adaptive_avg_pool2d``'s overlapping bins.

    Args:
        mask: ``[H, W]``, ``[N, H, W]`` or ``[N, 1, H, W]``; 1 = visible face.
        size: the grid ``(h, w)``, e.g. ``(7, 7)`` for the body map of a 112x112 face.

    Returns:
        torch.Tensor: float32 ``[N, 1, h, w]`` (``N = 1`` for a single ``[H, W]`` mask).
    """
    t = torch.as_tensor(mask)
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[:, None]
    elif t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f'mask must be [H, W], [N, H, W] or [N, 1, H, W], got {tuple(t.shape)}')
    return F.adaptive_avg_pool2d(t.float(), tuple(size))
