"""Train a model from a config (MMPretrain-style arguments).

    python tools/train.py configs/oaml_ir50.py [--work-dir DIR] [--resume [CKPT]] [--amp]
    tools/dist_train.sh configs/oaml_ir50.py 8

Without CUDA, a distributed launch runs DDP over gloo on CPU processes. ``--amp`` selects
``AutocastOptimWrapper`` everywhere: float16 with dynamic loss scaling on CUDA (``--amp-dtype
bfloat16`` for bf16), bfloat16 on the CPU; non-finite losses stay skipped.
"""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmoaml.engine import setup_cpu_distributed
from mmoaml.registry import RUNNERS
from mmoaml.utils import register_all_modules


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train an mmoaml model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a value, from the latest '
        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='enable mixed-precision training')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        default=None,
        help='autocast dtype with --amp: float16 (default on CUDA, dynamic loss scaling) or '
        'bfloat16 (default and only choice on the CPU)')
    parser.add_argument('--no-validate', action='store_true', help='skip validation')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_epochs=2')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.amp_dtype is not None and not args.amp:
        parser.error('--amp-dtype needs --amp')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


#: Wrapper types ``--amp`` may replace: the plain, non-finite-skipping and AMP wrappers.
AMP_REPLACEABLE = ('OptimWrapper', 'FiniteLossOptimWrapper', 'AmpOptimWrapper',
                   'AutocastOptimWrapper')


def amp_optim_wrapper(cfg: Config, dtype: Optional[str]) -> None:
    """Switch ``cfg.optim_wrapper`` to ``AutocastOptimWrapper`` on this machine's device.

    One wrapper on every device: MMEngine's ``AmpOptimWrapper`` refuses to start without CUDA
    and does not skip non-finite losses. On CUDA the default is float16 with dynamic loss
    scaling (AdaFace's 16-bit recipe); on the CPU bfloat16 (float16 is refused there: no fast
    kernels). A ``loss_scale`` already in the config is kept.
    """
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type not in AMP_REPLACEABLE:
        raise ValueError(f'--amp: optim_wrapper.type={wrapper_type!r} cannot be switched to '
                         f'autocast; expected one of {AMP_REPLACEABLE}')
    on_cuda = torch.cuda.is_available()
    if dtype is None:
        dtype = 'float16' if on_cuda else 'bfloat16'
    elif dtype == 'float16' and not on_cuda:
        raise ValueError('--amp-dtype float16 needs CUDA; use bfloat16 on the CPU')
    cfg.optim_wrapper.type = 'AutocastOptimWrapper'
    cfg.optim_wrapper.dtype = dtype
    if cfg.optim_wrapper.get('loss_scale') is None:
        cfg.optim_wrapper.loss_scale = 'auto'


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to ``cfg``: ``--cfg-options`` first, then the named flags."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        amp_optim_wrapper(cfg, args.amp_dtype)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise ValueError(f'--auto-scale-lr: {args.config} has no auto_scale_lr '
                             '(base_batch_size) setting')
        cfg.auto_scale_lr.enable = True
    return cfg


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    cfg = merge_args(Config.fromfile(args.config), args)
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
