"""Embedding layer of ArcFace/AdaFace: feature map -> unit embedding and its norm."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmoaml.registry import MODELS


@MODELS.register_module()
class FaceEmbeddingNeck(BaseModule):
    """BN2d - Dropout - Flatten - Linear - BN1d head producing a unit embedding and its norm.

    The reference ``output_layer`` of the AdaFace backbone (mk-minchul/AdaFace ``net.py``):
    BatchNorm2d(C) -> Dropout(0.4) -> flatten in NCHW order (index ``c*h*w + y*w + x``) ->
    Linear(C*h*w -> D, with bias) -> BatchNorm1d(D, affine=False); then the features ``f`` are
    split into ``norm = ||f||_2`` and ``embedding = f / norm``. AdaFace's margin reads the norm as
    a feature-quality proxy, so it is returned unclamped.

    Deviation from the reference: the reference divides by the norm without an epsilon, so an
    all-zero feature vector gives a NaN embedding. Here the divisor is clamped to the smallest
    normal number of the feature dtype (``torch.finfo(dtype).tiny``, so it also holds in fp16),
    which leaves every non-degenerate embedding unchanged and maps a zero vector to a zero
    embedding; the returned norm is still the true one (0).

    Submodules (reference ``output_layer`` index in brackets): ``feat_bn`` (0), ``dropout`` (1),
    ``fc`` (3), ``embed_bn`` (4).

    Args:
        in_channels (int): Channels ``C`` of the input map. Defaults to 512 (basic IR body);
            2048 for the bottleneck depths 152/200.
        feat_size (int | tuple[int, int]): Spatial size ``(h, w)`` of the input map. Defaults to
            7 (112x112 input; 14 for 224x224).
        embed_dim (int): Embedding size ``D``. Defaults to 512 (AdaFace).
        dropout (float): Dropout probability before the linear layer. Defaults to 0.4 (AdaFace).
        init_cfg (dict | list[dict], optional): Initialisation. The default is the reference one:
            Kaiming-normal (fan_out, ReLU gain) for the linear weight, zero bias; BatchNorm2d
            weight 1, bias 0.

    Examples:
        >>> import torch
        >>> from mmoaml.models import FaceEmbeddingNeck
        >>> neck = FaceEmbeddingNeck(in_channels=512, feat_size=7).eval()
        >>> embedding, norm = neck((torch.rand(2, 512, 7, 7), ))
        >>> tuple(embedding.shape), tuple(norm.shape)
        ((2, 512), (2, 1))
    """

    def __init__(self,
                 in_channels: int = 512,
                 feat_size: Union[int, Sequence[int]] = 7,
                 embed_dim: int = 512,
                 dropout: float = 0.4,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer='Linear'),
                     dict(type='Constant', val=1, bias=0, layer='_BatchNorm'),
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        size = (feat_size, feat_size) if isinstance(feat_size, int) else tuple(feat_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(
                f'feat_size must be a positive int or a pair of them, got {feat_size!r}')
        self.in_channels = in_channels
        self.feat_size = size
        self.embed_dim = embed_dim
        self.feat_bn = nn.BatchNorm2d(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels * size[0] * size[1], embed_dim)
        self.embed_bn = nn.BatchNorm1d(embed_dim, affine=False)

    def forward(self, maps: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed the last map of ``maps``.

        Args:
            maps (Sequence[Tensor]): Backbone outputs; the last one, ``[B, C, h, w]``, is used.

        Returns:
            tuple[Tensor, Tensor]: ``embedding`` ``[B, D]`` with unit L2 norm (zero for a zero
            feature vector) and ``norm`` ``[B, 1]``, the L2 norm of the features before
            normalisation.
        """
        x = maps[-1]
        expected = (self.in_channels, *self.feat_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f'FaceEmbeddingNeck expects a map [B, {expected[0]}, {expected[1]}, '
                             f'{expected[2]}] (in_channels, feat_size), got {list(x.shape)}')
        x = self.dropout(self.feat_bn(x))
        x = self.embed_bn(self.fc(torch.flatten(x, 1)))
        norm = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)
        embedding = x / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        return embedding, norm
