"""IR-ResNet (improved residual network) backbone of ArcFace/AdaFace.

The architecture follows the IR / IR-SE backbones of AdaFace (mk-minchul/AdaFace ``net.py``;
Deng et al., "ArcFace", CVPR 2019, https://arxiv.org/abs/1801.07698; Kim et al., "AdaFace",
CVPR 2022, https://arxiv.org/abs/2204.00964). Module and parameter names mirror the reference
layout (``input_layer.*``, ``body.<unit>.res_layer.<j>.*``, ``body.<unit>.shortcut_layer.*``,
``res_layer.se_block.fc{1,2}.weight``) so that released AdaFace weights map onto it by a prefix
rename (see ``tools/model_converters/adaface_to_mmoaml.py``).
"""
import contextlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from mmoaml.registry import MODELS

#: Units per stage of each depth (AdaFace ``get_blocks``; "IR-100" is AdaFace's ``ir_101``).
UNITS_PER_STAGE: Dict[int, Tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}

#: Depths above this use the bottleneck unit with 256..2048 channels (AdaFace ``Backbone``).
MAX_BASIC_DEPTH = 100

BASIC_STAGE_CHANNELS = (64, 128, 256, 512)
BOTTLENECK_STAGE_CHANNELS = (256, 512, 1024, 2048)
STEM_CHANNELS = 64
#: Channel reduction of the squeeze-excitation block (AdaFace ``SEModule(depth, 16)``).
SE_REDUCTION = 16
#: Every stage halves the resolution once, so the body map is input / 2**4.
TOTAL_STRIDE = 16
#: Where a unit's stride sits: ``'last'`` (reference: the second 3x3 conv of the basic unit, the
#: last 1x1 conv of the bottleneck) or ``'first'`` (the branch's first conv).
STRIDE_POSITIONS = ('last', 'first')


def _pair(size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    """Return ``size`` as ``(h, w)``; ``name`` is used in the error message."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f'{name} must be a positive int or a pair of them, got {size!r}')
    return pair


def _stage_tuple(values: Optional[Sequence[int]], default: Sequence[int],
                 name: str) -> Tuple[int, ...]:
    """Four positive per-stage integers (``default`` when ``values`` is None)."""
    if values is None:
        return tuple(default)
    values = tuple(values)
    if len(values) != len(default) or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f'{name} must be {len(default)} positive ints (one per stage), got '
                         f'{values!r}')
    return values


class SqueezeExcitation(nn.Module):
    """Channel attention of the IR-SE unit, without biases (AdaFace ``SEModule``).

    Global average pool -> 1x1 conv ``C -> C // reduction`` -> ReLU -> 1x1 conv back to ``C``
    -> sigmoid, then the input is scaled per channel.

    Args:
        channels (int): Number of channels ``C``.
        reduction (int): Channel reduction of the bottleneck. Defaults to 16 (AdaFace).
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` ``[B,C,H,W]`` by its channel attention ``[B,C,1,1]``."""
        scale = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * scale


class Subsample(nn.Module):
    """Parameter-free identity shortcut: ``x`` itself at stride 1 (the reference's
    ``MaxPool2d(1, 1)`` copies the whole activation), ``x[..., ::s, ::s]`` copied into a dense
    tensor of ``x``'s memory format otherwise (a strided view would spare that smaller copy,
    but in training it made the residual sum and its backward about 12 % slower per step of the
    SynthFace model, bf16, channels-last; the copy as a slice costs 4-15x less than
    ``max_pool2d(x, 1, s)``, which computes indices too).

    Args:
        stride (int): Subsampling step ``s``.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` (stride 1) or its subsampled positions ``[B, C, H/s, W/s]``."""
        if self.stride == 1:
            return x
        return x[..., ::self.stride, ::self.stride].clone(memory_format=torch.preserve_format)

    def extra_repr(self) -> str:
        return f'stride={self.stride}'


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity branch of a unit: pure subsampling when the widths agree, else a 1x1 projection."""
    if in_channels == out_channels:
        return Subsample(stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels))


def _residual_sum(out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``out + shortcut``, in place in ``out`` (the residual branch's fresh output; its last
    op, BN or SE's multiply, does not keep it for backward) when the dtypes agree."""
    if out.dtype == torch.promote_types(out.dtype, shortcut.dtype):
        return out.add_(shortcut)
    return out + shortcut


class BasicIRUnit(nn.Module):
    """Basic improved residual unit (AdaFace ``BasicBlockIR`` / ``BasicBlockIRSE``).

    Residual branch ``res_layer``: BN(C_in) -> conv3x3(C_in -> C) -> BN(C) -> PReLU(C) ->
    conv3x3(C -> C) -> BN(C) [-> squeeze-excitation]. The stride sits on the second conv
    (reference) or, with ``stride_position='first'``, on the first. The output is
    ``res_layer(x) + shortcut_layer(x)`` with no activation after the sum.

    Args:
        in_channels (int): Input channels ``C_in``.
        out_channels (int): Output channels ``C``.
        stride (int): Stride of the unit (2 for the first unit of a stage, else 1).
        se (bool): Append a squeeze-excitation block (IR-SE). Defaults to False.
        stride_position (str): ``'last'`` (reference) or ``'first'``. Defaults to ``'last'``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, se: bool = False,
                 stride_position: str = 'last') -> None:
        super().__init__()
        first, last = (stride, 1) if stride_position == 'first' else (1, stride)
        self.shortcut_layer = _shortcut(in_channels, out_channels, stride)
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, stride=first, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride=last, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if se:
            self.res_layer.add_module('se_block', SqueezeExcitation(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B,C_in,H,W]`` to ``[B,C,H/s,W/s]``."""
        return _residual_sum(self.res_layer(x), self.shortcut_layer(x))


class BottleneckIRUnit(nn.Module):
    """Bottleneck improved residual unit for depths 152/200 (AdaFace ``BottleneckIR``).

    Residual branch ``res_layer``: BN(C_in) -> conv1x1(C_in -> C/4) -> BN -> PReLU ->
    conv3x3(C/4 -> C/4) -> BN -> PReLU -> conv1x1(C/4 -> C, stride s) -> BN(C)
    [-> squeeze-excitation]; the stride sits on the last 1x1 conv (reference) or, with
    ``stride_position='first'``, on the first. Shortcut and sum as in :class:`BasicIRUnit`.

    Args:
        in_channels (int): Input channels ``C_in``.
        out_channels (int): Output channels ``C``.
        stride (int): Stride of the unit.
        se (bool): Append a squeeze-excitation block (IR-SE). Defaults to False.
        stride_position (str): ``'last'`` (reference) or ``'first'``. Defaults to ``'last'``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, se: bool = False,
                 stride_position: str = 'last') -> None:
        super().__init__()
        mid = out_channels // 4
        first, last = (stride, 1) if stride_position == 'first' else (1, stride)
        self.shortcut_layer = _shortcut(in_channels, out_channels, stride)
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, mid, 1, stride=first, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, out_channels, 1, stride=last, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if se:
            self.res_layer.add_module('se_block', SqueezeExcitation(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B,C_in,H,W]`` to ``[B,C,H/s,W/s]``."""
        return _residual_sum(self.res_layer(x), self.shortcut_layer(x))


class _RestoreBatchNormStats:
    """Context that undoes the running-statistics update of a checkpoint recomputation.

    Activation checkpointing runs a unit's forward a second time during backward. In train mode
    that second pass would update every BatchNorm's running statistics again, so a run with
    ``with_cp=True`` would drift from one without it. Entered around the recomputation, this
    restores the statistics recorded on entry.
    """

    def __init__(self, module: nn.Module) -> None:
        self.norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
        self.saved: List[List[torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [[buf.clone() for buf in norm.buffers()] for norm in self.norms]

    def __exit__(self, *exc) -> None:
        with torch.no_grad():
            for norm, saved in zip(self.norms, self.saved):
                for buf, value in zip(norm.buffers(), saved):
                    buf.copy_(value)
        self.saved = []


@MODELS.register_module()
class IResNet(BaseModule):
    """IR-ResNet backbone (IR / IR-SE) returning feature maps of its four stages.

    A reimplementation of the AdaFace backbone body (mk-minchul/AdaFace ``net.py``): an input
    layer conv3x3(3 -> 64) -> BN -> PReLU at full resolution, then four stages whose first unit
    has stride 2. Depths 18/34/50/100 use :class:`BasicIRUnit` with 64/128/256/512 channels,
    152/200 :class:`BottleneckIRUnit` with 256/512/1024/2048 channels. The reference output layer
    (BN2d - Dropout - Linear - BN1d) is :class:`FaceEmbeddingNeck`; together they hold exactly the
    reference parameter count (IR-50 + neck at 112x112: 43,585,600).

    The units form one flat ``body`` sequence as in the reference (stage boundaries follow from
    the unit counts), so AdaFace checkpoints load after a prefix rename.

    Output sizes at ``H x W`` input (112x112 in brackets):

    ====== ============================= ===============================
    stage  basic (depth <= 100)          bottleneck (152, 200)
    ====== ============================= ===============================
    0      ``[B, 64, H/2, W/2]`` (56)    ``[B, 256, H/2, W/2]``
    1      ``[B, 128, H/4, W/4]`` (28)   ``[B, 512, H/4, W/4]``
    2      ``[B, 256, H/8, W/8]`` (14)   ``[B, 1024, H/8, W/8]``
    3      ``[B, 512, H/16, W/16]`` (7)  ``[B, 2048, H/16, W/16]``
    ====== ============================= ===============================

    Stage 3 is the body map (the reference ``body`` output, before the output layer).

    Args:
        depth (int): One of 18, 34, 50, 100, 152, 200. Defaults to 50.
        se (bool): Use IR-SE units (squeeze-excitation, reduction 16, at the end of every
            residual branch). Defaults to False.
        input_size (int | tuple[int, int]): Expected input ``H x W``; must be divisible by 16.
            ``forward`` rejects other sizes so that the map sizes the neck and the matching heads
            are configured for hold. Defaults to 112 (AdaFace).
        out_indices (Sequence[int]): Stages whose outputs ``forward`` returns, in this order;
            negative indices count from the last stage. Defaults to ``(3,)``, the body map.
        frozen_stages (int): Freeze (no gradient, BatchNorm in eval mode) the input layer and the
            first ``frozen_stages`` stages; ``-1`` freezes nothing, ``0`` only the input layer.
            Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode (frozen running statistics) while
            training. Defaults to False.
        with_cp (bool): Recompute each unit's activations in backward (activation checkpointing)
            to save memory; results, gradients and BatchNorm statistics are the same as without.
            Defaults to False.
        stem_channels (int, optional): Channels of the input layer. Defaults to None: 64
            (reference). Not a reference option: it and the two below make small variants
            (e.g. SynthFace's CPU-sized models) possible with the same unit design.
        stage_channels (Sequence[int], optional): Channels of the four stages. Defaults to None:
            the reference channels of ``depth`` (64/128/256/512 or 256/512/1024/2048).
        stage_units (Sequence[int], optional): Units of the four stages. Defaults to None: the
            reference counts of ``depth`` (:data:`UNITS_PER_STAGE`).
        stride_position (str): Which conv of a stage's first unit carries the stride:
            ``'last'`` (reference: the second 3x3 conv of a basic unit, the last 1x1 of a
            bottleneck) or ``'first'`` (the branch's first conv, so the rest of the unit runs at
            the reduced resolution: about half the FLOPs of that unit; the SynthFace CPU model
            uses it). Not a reference option; parameter names and shapes are the same either
            way, but reference weights expect ``'last'``. Defaults to ``'last'``.
        init_cfg (dict | list[dict], optional): Initialisation. The default is the reference one
            (``initialize_weights``): Kaiming-normal (fan_out, ReLU gain) for every conv including
            the SE convs, BatchNorm weight 1 and bias 0; PReLU keeps PyTorch's 0.25.

    Examples:
        >>> import torch
        >>> from mmoaml.models import IResNet
        >>> model = IResNet(depth=18, out_indices=(2, 3)).eval()
        >>> maps = model(torch.rand(1, 3, 112, 112))
        >>> [tuple(m.shape) for m in maps]
        [(1, 256, 14, 14), (1, 512, 7, 7)]

        In a config::

            backbone=dict(type='IResNet', depth=50, se=False, input_size=112)
    """

    def __init__(self,
                 depth: int = 50,
                 se: bool = False,
                 input_size: Union[int, Sequence[int]] = 112,
                 out_indices: Sequence[int] = (3,),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 stem_channels: Optional[int] = None,
                 stage_channels: Optional[Sequence[int]] = None,
                 stage_units: Optional[Sequence[int]] = None,
                 stride_position: str = 'last',
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='Constant', val=1, bias=0, layer='_BatchNorm'),
                 ]) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth not in UNITS_PER_STAGE:
            raise ValueError(f'IResNet depth must be one of {sorted(UNITS_PER_STAGE)}, got {depth}')
        self.input_size = _pair(input_size, 'input_size')
        if any(s % TOTAL_STRIDE for s in self.input_size):
            raise ValueError(f'input_size must be divisible by {TOTAL_STRIDE}, got {input_size!r}')
        bottleneck = depth > MAX_BASIC_DEPTH
        default_channels = BOTTLENECK_STAGE_CHANNELS if bottleneck else BASIC_STAGE_CHANNELS
        self.stage_channels = _stage_tuple(stage_channels, default_channels, 'stage_channels')
        self.stage_units = _stage_tuple(stage_units, UNITS_PER_STAGE[depth], 'stage_units')
        if stem_channels is None:
            stem_channels = STEM_CHANNELS
        if not isinstance(stem_channels, int) or stem_channels < 1:
            raise ValueError(f'stem_channels must be a positive int, got {stem_channels!r}')
        if stride_position not in STRIDE_POSITIONS:
            raise ValueError(f'stride_position must be one of {STRIDE_POSITIONS}, got '
                             f'{stride_position!r}')
        self.stride_position = stride_position
        num_stages = len(self.stage_units)
        self.out_indices = tuple(self._normalise_index(i, num_stages) for i in out_indices)
        if not self.out_indices:
            raise ValueError('out_indices must name at least one stage')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], got {frozen_stages}')
        self.depth = depth
        self.se = se
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        unit_cls = BottleneckIRUnit if bottleneck else BasicIRUnit

        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.PReLU(stem_channels),
        )
        units = []
        stage_ends = []
        in_channels = stem_channels
        for num_units, channels in zip(self.stage_units, self.stage_channels):
            for j in range(num_units):
                units.append(unit_cls(in_channels, channels, stride=2 if j == 0 else 1, se=se,
                                      stride_position=stride_position))
                in_channels = channels
            stage_ends.append(len(units))
        self.body = nn.Sequential(*units)
        self.stage_ends = tuple(stage_ends)

        self._freeze_stages()

    @staticmethod
    def _normalise_index(index: int, num_stages: int) -> int:
        if not -num_stages <= index < num_stages:
            raise ValueError(f'out_indices entries must be in [-{num_stages}, {num_stages - 1}], '
                             f'got {index}')
        return index % num_stages

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned map, in ``out_indices`` order."""
        return tuple(self.stage_channels[i] for i in self.out_indices)

    @property
    def out_sizes(self) -> Tuple[Tuple[int, int], ...]:
        """Spatial size ``(h, w)`` of each returned map, in ``out_indices`` order.

        Every stage halves the resolution (the input layer keeps it), so stage ``i`` of an
        ``H x W`` input is ``H / 2^(i+1) x W / 2^(i+1)``: 7x7 for stage 3 at 112x112.
        """
        return tuple((self.input_size[0] >> (i + 1), self.input_size[1] >> (i + 1))
                     for i in self.out_indices)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        num_frozen_units = self.stage_ends[self.frozen_stages - 1] if self.frozen_stages else 0
        return [self.input_layer, *self.body[:num_frozen_units]]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'IResNet':
        """Set train/eval mode, keeping frozen stages and (with ``norm_eval``) all norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def _run_unit(self, unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not (self.with_cp and self.training and torch.is_grad_enabled()):
            return unit(x)
        return checkpoint(
            unit,
            x,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _RestoreBatchNormStats(unit)))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Compute the stage maps.

        Args:
            x (Tensor): Images ``[B, 3, H, W]`` with ``(H, W) == input_size``.

        Returns:
            tuple[Tensor]: The maps of the stages in ``out_indices`` (see the class docstring).
        """
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f'IResNet expects images [B, 3, {self.input_size[0]}, '
                             f'{self.input_size[1]}] (input_size), got {list(x.shape)}')
        x = self.input_layer(x)
        stage_maps = []
        for index, unit in enumerate(self.body):
            x = self._run_unit(unit, x)
            if index + 1 in self.stage_ends:
                stage_maps.append(x)
        return tuple(stage_maps[i] for i in self.out_indices)
