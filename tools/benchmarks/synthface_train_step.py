"""Training step of the SynthFace demo models: the stride on the first conv of each stage's
first unit (``IResNet(stride_position='first')``, the demo's setting) against the reference
position (second conv), for the AdaFace-only baseline and OAML.

Models are built from ``configs/adaface_synthface.py`` and ``configs/oaml_synthface.py`` (400
classes) and trained through ``model.train_step`` with AdamW under bf16 autocast (what
``tools/train.py --amp`` does on the CPU) on a synthetic PK batch (``--batch`` faces, 4 per
identity, random pixels; the OAML batch also carries ground-truth visibility maps). The
variants are timed alternately, step by step, and each time is the best of ``--iters`` steps
after one warm-up step, which filters out other load on a shared machine.

Example::

    python tools/benchmarks/synthface_train_step.py --threads 1
"""
import argparse
import copy
import os.path as osp
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS
from mmoaml.structures import GT_VISIBILITY
from mmoaml.utils import register_all_modules

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(adaface='configs/adaface_synthface.py', oaml='configs/oaml_synthface.py')


def build(config: str, stride_position: str):
    cfg = Config.fromfile(osp.join(REPO, config))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.stride_position = stride_position
    model_cfg.adaface_head.num_classes = 400
    model = MODELS.build(model_cfg).train()
    wrapper = build_optim_wrapper(model, dict(
        type='AutocastOptimWrapper', dtype='bfloat16',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)))
    return model, wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=64, help='faces per step (default 64)')
    parser.add_argument('--iters', type=int, default=5, help='timed steps per case (best kept)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    register_all_modules()
    images = [torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8) for _ in range(args.batch)]
    samples = []
    for i in range(args.batch):
        sample = DataSample().set_gt_label(i // 4)
        sample.set_field(torch.rand(1, 112, 112), GT_VISIBILITY)
        samples.append(sample)
    data = dict(inputs=images, data_samples=samples)
    cases = {(name, position): build(config, position)
             for name, config in CONFIGS.items() for position in ('last', 'first')}
    best = {case: float('inf') for case in cases}
    for step in range(args.iters + 1):
        for case, (model, wrapper) in cases.items():
            start = time.perf_counter()
            model.train_step(data, wrapper)
            elapsed = time.perf_counter() - start
            if step:  # the first step warms up
                best[case] = min(best[case], elapsed)
    print(f'batch {args.batch}, bf16 autocast, {args.threads} thread(s); best of {args.iters}')
    for name in CONFIGS:
        last, first = best[(name, 'last')], best[(name, 'first')]
        print(f'{name:8s} stride last {args.batch / last:6.1f} img/s, first '
              f'{args.batch / first:6.1f} img/s: {last / first:.2f}x')
    ratio = best[('oaml', 'first')] / best[('adaface', 'first')]
    print(f'OAML / AdaFace-only step time (stride first): {ratio:.2f}')


if __name__ == '__main__':
    main()
