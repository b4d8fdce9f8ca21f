"""IR-50 inference throughput of the body (input layer and four stages, 112x112 -> 512x7x7)
against two others timed in the same run:

- ``reference``: the same model and weights with the AdaFace reference unit, a
  ``MaxPool2d(kernel_size=1, stride=s)`` shortcut (a copy of the activation) and an
  out-of-place ``res + shortcut`` (patched here only);
- ``insightface``: the body of insightface's ``iresnet50`` layout (arcface_torch), built here
  from its published structure: units BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN with
  ``out += x`` on identity shortcuts and a conv1x1 + BN downsample wherever the stride or the
  channels change (including the first unit of stage 1, which mmoaml subsamples for free).
  Same FLOPs otherwise; its own random weights (speed does not depend on them).

Eval mode, channels-last, float32 and bfloat16 (model and input cast), on the CPU. The
contenders are timed alternately, batch by batch, and every time is the best of ``--repeats``
after a warm-up, which filters out other load on a shared machine.

Example::

    python tools/benchmarks/iresnet_throughput.py --batch 8 --repeats 5 --threads 1
"""
import argparse
import copy
import time
import types
from typing import Callable, Dict

import torch
import torch.nn as nn

from mmoaml.models.backbones import IResNet
from mmoaml.models.backbones.iresnet import Subsample

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def reference_unit_forward(self, x: torch.Tensor) -> torch.Tensor:
    """The reference unit's sum: a new tensor for ``res + shortcut``."""
    return self.res_layer(x) + self.shortcut_layer(x)


def reference_variant(model: IResNet) -> IResNet:
    """A copy of ``model`` with ``MaxPool2d(1, s)`` shortcuts and out-of-place sums."""
    ref = copy.deepcopy(model)
    for unit in ref.body:
        if isinstance(unit.shortcut_layer, Subsample):
            unit.shortcut_layer = nn.MaxPool2d(kernel_size=1, stride=unit.shortcut_layer.stride)
        unit.forward = types.MethodType(reference_unit_forward, unit)
    return ref


class InsightfaceLayoutUnit(nn.Module):
    """One ``IBasicBlock`` of insightface's iresnet layout (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        out += x if self.downsample is None else self.downsample(x)
        return out


def insightface_layout_body(units=(3, 4, 14, 3), channels=(64, 128, 256, 512)) -> nn.Module:
    """Input layer and four stages of insightface's ``iresnet50`` (stride 2 first units)."""
    layers = [nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)]
    in_channels = 64
    for count, out_channels in zip(units, channels):
        for idx in range(count):
            layers.append(InsightfaceLayoutUnit(in_channels, out_channels, 2 if idx == 0 else 1))
            in_channels = out_channels
    return nn.Sequential(*layers)


def best_times(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Best wall time of each ``fn`` over ``repeats`` alternating rounds after a warm-up."""
    best = {name: float('inf') for name in fns}
    for round_idx in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_idx:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=8, help='images per batch (default 8)')
    parser.add_argument('--repeats', type=int, default=5, help='timed rounds (best kept)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = IResNet(depth=50).eval()
    insightface = insightface_layout_body().eval()
    images = torch.randn(args.batch, 3, 112, 112)
    print(f'IR-50 eval, 112x112, batch {args.batch}, channels-last, '
          f'threads={torch.get_num_threads()}, best of {args.repeats} alternating rounds')
    print(f'{"precision":<9} {"new img/s":>10} {"reference img/s":>16} {"insightface img/s":>18} '
          f'{"new / reference":>16} {"new / insightface":>18}')
    with torch.inference_mode():
        for name, dtype in PRECISIONS.items():
            new = model.to(dtype=dtype, memory_format=torch.channels_last)
            ref = reference_variant(new)
            x = images.to(dtype=dtype, memory_format=torch.channels_last)
            other = insightface.to(dtype=dtype, memory_format=torch.channels_last)
            torch.testing.assert_close(new(x)[0], ref(x)[0], atol=0, rtol=0)
            assert other(x).shape == new(x)[0].shape  # the same 512 x 7 x 7 body map
            times = best_times(dict(new=lambda: new(x), ref=lambda: ref(x),
                                    other=lambda: other(x)), args.repeats)
            rates = {k: args.batch / t for k, t in times.items()}
            print(f'{name:<9} {rates["new"]:10.2f} {rates["ref"]:16.2f} {rates["other"]:18.2f} '
                  f'{times["ref"] / times["new"]:16.3f} {times["other"] / times["new"]:18.3f}')


if __name__ == '__main__':
    main()
