"""Training-iteration cost: OAML against AdaFace-only at equal batch, and IR-50 training
throughput against the machine's matrix-multiply bound, in float32 and bfloat16 autocast.

Both models are built from the shipped configs (``configs/oaml_ir50.py``,
``configs/adaface_ir50.py``: IR-50, 10,572 classes) and trained through ``model.train_step``
with the configs' optimizer wrapper (``AutocastOptimWrapper`` for the reduced precisions, as
``tools/train.py --amp`` selects), so an iteration is what the Runner does: preprocessing,
forward, losses, backward, SGD step. Input is a synthetic PK batch (``--batch`` images, 4 per
identity) of 112x112 faces; the OAML iteration also gets an occlusion batch in the configs'
proportion (40 occlusion images per 256 main images, at least one) whose backbone pass runs
without gradient. The two models are timed alternately, iteration by iteration, and every time
is the best of ``--iters`` runs after ``--warmup`` runs, which filters out other load on a
shared machine. Goal (issue "Training at scale"): OAML at most 1.3x AdaFace-only.

Throughput bound: a training step costs about 3x the forward multiply-adds (the backward pass
computes input and weight gradients), so one image costs ``6 x MACs`` FLOPs, with the MACs of
every convolution and linear layer counted by hooks on a forward pass (IR-50 + neck:
docs/reference.md#parameter-counts-and-macs gives 6.30 G) plus the AdaFace head's ``512 x
classes``. Dividing images/s
x FLOPs/image by the best measured ``torch.matmul`` rate of the same precision gives the
fraction of the machine's matrix-multiply bound that training reaches. The same MAC counts
give the analytic OAML/AdaFace FLOP ratio at this batch and at the configs' 256, where
QAConv's all-pairs correlation (``batch^2`` pairs) weighs more than at a CPU-sized batch.

On the CPU the default is one thread for both the training steps and the bound: on a shared
machine, OpenMP threads that wait at every operator's barrier for a descheduled sibling
inflate each operator's cost (measured on the 2-core development machine under load: 10 s per
fp32 iteration on 2 threads, 4 s on 1), which also penalises the model with more, smaller
operators. ``--threads N`` measures N threads against an N-thread bound.

Examples::

    python tools/benchmarks/train_iteration.py                  # CPU: batch 8, 1 thread, ~1.5 min
    python tools/benchmarks/train_iteration.py --device cuda --batch 256 --iters 10 \\
        --dtypes fp32 bf16 fp16 --channels-last
"""
import argparse
import logging
import math
import os.path as osp
import time
from typing import Callable, Dict, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS
from mmoaml.structures import face_region_prior
from mmoaml.utils import register_all_modules

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRECISIONS = {'fp32': None, 'bf16': 'bfloat16', 'fp16': 'float16'}
MATMUL_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
#: Occlusion images per main-batch image in the configs: (32 occluded + 8 clean) / 256.
OCC_PER_MAIN = 40 / 256
#: IR-50 + neck conv/linear MACs per 112x112 image (docs/reference.md#parameter-counts-and-macs).
REFERENCE_IR50_MACS = 6.30e9
SIZE = 112
K = 4  # images per identity (PKSampler num_instances)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--oaml-config', default=osp.join(REPO, 'configs', 'oaml_ir50.py'))
    parser.add_argument('--adaface-config', default=osp.join(REPO, 'configs', 'adaface_ir50.py'))
    parser.add_argument('--batch', type=int, default=8,
                        help='main batch, a multiple of 4 (default 8: CPU-sized)')
    parser.add_argument('--iters', type=int, default=4, help='timed iterations per case')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations per case')
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'],
                        choices=list(PRECISIONS), help='precisions (default fp32 bf16)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--channels-last', action='store_true',
                        help='FaceDataPreprocessor(channels_last=True) for both models')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads on the CPU (default 1; see below)')
    parser.add_argument('--matmul-size', type=int, default=2048,
                        help='n of the n x n x n matmuls of the bound (default 2048)')
    args = parser.parse_args()
    if args.batch % K or args.batch < 2 * K:
        parser.error(f'--batch must be a multiple of {K} with at least two identities')
    return args


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def build_model(config: str, channels_last: bool, device: str) -> nn.Module:
    cfg = Config.fromfile(config)
    cfg.model.data_preprocessor.channels_last = channels_last
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmoaml'):
        model = MODELS.build(cfg.model)
    return model.to(device).train(), cfg


def build_wrapper(model: nn.Module, cfg: Config, precision: str):
    """The config's optimizer wrapper, switched to autocast as ``tools/train.py --amp`` does."""
    wrapper_cfg = cfg.optim_wrapper.copy()
    if PRECISIONS[precision] is not None:
        wrapper_cfg.update(type='AutocastOptimWrapper', dtype=PRECISIONS[precision])
    with DefaultScope.overwrite_default_scope('mmoaml'):
        return build_optim_wrapper(model, wrapper_cfg)


def face_batch(num: int, first_label: int = 0, seed: int = 0) -> Dict[str, list]:
    """A collated batch as the loaders give it: uint8 images, labels (K per identity) and the
    face-region visibility prior."""
    generator = torch.Generator().manual_seed(seed)
    prior = torch.from_numpy(face_region_prior((SIZE, SIZE)))[None]
    inputs, samples = [], []
    for i in range(num):
        inputs.append(torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8,
                                    generator=generator))
        sample = DataSample().set_gt_label(first_label + i // K)
        sample.set_field(prior.clone(), 'gt_visibility')
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def count_macs(module: nn.Module, forward: Callable[[], object]) -> float:
    """Multiply-adds of every convolution and linear layer of ``module`` during ``forward()``,
    per sample of the batch it runs."""
    macs = []

    def hook(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        else:
            per_output = layer.in_features
        macs.append(output.numel() / output.shape[0] * per_output)

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        forward()
    for handle in handles:
        handle.remove()
    return sum(macs)


def model_macs(ada: nn.Module, oaml: nn.Module, device: str) -> Dict[str, float]:
    """Per-image MACs of backbone + neck, AdaFace head, occlusion head; per-pair QAConv."""
    image = torch.zeros(1, 3, SIZE, SIZE, device=device)
    ada.eval()
    body = count_macs(ada, lambda: ada.neck(ada.backbone(image)))
    ada.train()
    oaml.eval()
    feature_map = oaml.extract_feat(image)['feature_map']
    occ_head = count_macs(oaml.occlusion_head, lambda: oaml.occlusion_head(feature_map))
    oaml.train()
    head = ada.adaface_head
    qaconv = oaml.qaconv_head
    locations = qaconv.height * qaconv.width
    return dict(body=body, head=float(head.embed_dim * head.num_classes), occ_head=occ_head,
                pair=float(locations * locations * qaconv.num_features))


def matmul_bound(dtype: torch.dtype, n: int, device: str, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n x n @ n x n`` product of this precision."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def time_alternately(steps: Dict[str, Callable[[], None]], warmup: int, iters: int,
                     device: str) -> Dict[str, Tuple[float, float]]:
    """Best wall and process-CPU seconds per call of each step, calling them in turn.

    CPU time counts only this process's work, so on a loaded machine it stays close to the
    unloaded wall time when running one thread (``--threads 1``).
    """
    best = {name: (math.inf, math.inf) for name in steps}
    for round_idx in range(warmup + iters):
        for name, step in steps.items():
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            synchronize(device)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if round_idx >= warmup:
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def flop_ratio_at(batch: int, occ_batch: int, body_macs: float, head_macs: float,
                  occ_head_macs: float, pair_macs: float) -> float:
    """Analytic FLOPs of an OAML iteration over an AdaFace-only one at main batch ``batch``.

    Trained parts cost 3x their forward (6 FLOPs per MAC); forward-only parts 2 FLOPs per MAC:
    the occlusion batch's backbone pass (no gradient) and the occlusion head on the detached
    main-batch map. The occlusion head trains on the occlusion batch; QAConv correlates all
    ``batch^2`` pairs of the batch with itself and back-propagates into both maps.
    """
    adaface = 6 * batch * (body_macs + head_macs)
    oaml = (adaface + 6 * batch**2 * pair_macs + 2 * occ_batch * body_macs +
            6 * occ_batch * occ_head_macs + 2 * batch * occ_head_macs)
    return oaml / adaface


def main() -> None:
    args = parse_args()
    if args.device == 'cpu':
        torch.set_num_threads(args.threads)
    # The optimizer constructor logs one line per parameter without weight decay.
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    register_all_modules(init_default_scope=False)
    occ_batch = max(1, round(args.batch * OCC_PER_MAIN))
    main_batch = face_batch(args.batch)
    oaml_batch = dict(face_batch(args.batch), occ=face_batch(occ_batch, seed=1))

    ada, ada_cfg = build_model(args.adaface_config, args.channels_last, args.device)
    oaml, oaml_cfg = build_model(args.oaml_config, args.channels_last, args.device)
    macs = model_macs(ada, oaml, args.device)
    flops_per_image = 6 * (macs['body'] + macs['head'])

    threads = f'{torch.get_num_threads()} threads' if args.device == 'cpu' else args.device
    print(f'device {args.device} ({threads}), torch {torch.__version__}, main batch '
          f'{args.batch} ({args.batch // K} identities x {K}), OAML occlusion batch {occ_batch}, '
          f'{SIZE}x{SIZE}, channels_last={args.channels_last}')
    print(f'IR-50 + neck: {macs["body"] / 1e9:.3f} GMACs/image (reference '
          f'{REFERENCE_IR50_MACS / 1e9:.2f}), AdaFace head {macs["head"] / 1e6:.1f} MMACs -> '
          f'{flops_per_image / 1e9:.1f} GFLOP per trained image (6 x MACs)')
    for batch in sorted({args.batch, 256}):
        occ = max(1, round(batch * OCC_PER_MAIN))
        ratio = flop_ratio_at(batch, occ, macs['body'], macs['head'], macs['occ_head'],
                              macs['pair'])
        print(f'analytic OAML/AdaFace FLOP ratio at batch {batch} (+{occ} occlusion): '
              f'{ratio:.3f}')

    rows = []
    for precision in args.dtypes:
        bound = matmul_bound(MATMUL_DTYPES[precision], args.matmul_size, args.device)
        ada_wrapper = build_wrapper(ada, ada_cfg, precision)
        oaml_wrapper = build_wrapper(oaml, oaml_cfg, precision)
        times = time_alternately(
            dict(adaface=lambda: ada.train_step(main_batch, ada_wrapper),
                 oaml=lambda: oaml.train_step(oaml_batch, oaml_wrapper)),
            args.warmup, args.iters, args.device)
        rows.append((precision, times['adaface'], times['oaml'], bound))

    print(f'\n{"":>9} {"wall s/iteration":^27} {"CPU s/iteration":^27}')
    print(f'{"precision":>9} {"AdaFace":>8} {"OAML":>8} {"ratio":>9} {"AdaFace":>8} '
          f'{"OAML":>8} {"ratio":>9} {"IR-50 img/s":>11} {"GFLOP/s":>8} {"matmul":>8} '
          f'{"of bound":>8}')
    for precision, (ada_wall, ada_cpu), (oaml_wall, oaml_cpu), bound in rows:
        images_per_s = args.batch / ada_wall
        achieved = images_per_s * flops_per_image / 1e9
        print(f'{precision:>9} {ada_wall:8.3f} {oaml_wall:8.3f} {oaml_wall / ada_wall:9.3f} '
              f'{ada_cpu:8.3f} {oaml_cpu:8.3f} {oaml_cpu / ada_cpu:9.3f} {images_per_s:11.2f} '
              f'{achieved:8.1f} {bound:8.1f} {achieved / bound:8.1%}')
    print(f'\nratio = OAML / AdaFace-only at equal main batch, goal <= 1.3; best of {args.iters} '
          f'alternating iterations after {args.warmup} warm-up. img/s and GFLOP/s from the '
          'AdaFace-only (plain IR-50) wall time; matmul = best n x n x n product, GFLOP/s.')


if __name__ == '__main__':
    main()
