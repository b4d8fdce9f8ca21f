"""IR-50 inference throughput: the subsampling-view shortcut with an in-place residual sum
against the reference unit (``MaxPool2d(1, s)`` shortcut, out-of-place sum).

Both variants share the same weights: the reference one is a copy of the model whose units get
a ``MaxPool2d(kernel_size=1, stride=s)`` shortcut and an out-of-place ``res + shortcut`` forward
(patched here only). Eval mode, channels-last, float32 and bfloat16 (model and input cast), on
the CPU. The variants are timed alternately, batch by batch, and every time is the best of
``--repeats`` after a warm-up, which filters out other load on a shared machine.

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
    images = torch.randn(args.batch, 3, 112, 112)
    print(f'IR-50 eval, 112x112, batch {args.batch}, channels-last, '
          f'threads={torch.get_num_threads()}, best of {args.repeats} alternating rounds')
    print(f'{"precision":<9} {"new img/s":>10} {"reference img/s":>16} {"new / reference":>16}')
    with torch.inference_mode():
        for name, dtype in PRECISIONS.items():
            new = model.to(dtype=dtype, memory_format=torch.channels_last)
            ref = reference_variant(new)
            x = images.to(dtype=dtype, memory_format=torch.channels_last)
            torch.testing.assert_close(new(x)[0], ref(x)[0], atol=0, rtol=0)
            times = best_times(dict(new=lambda: new(x), ref=lambda: ref(x)), args.repeats)
            print(f'{name:<9} {args.batch / times["new"]:10.2f} {args.batch / times["ref"]:16.2f} '
                  f'{times["ref"] / times["new"]:16.3f}')


if __name__ == '__main__':
    main()
