"""Train a model from a config (MMPretrain-style arguments).

    python tools/train.py configs/oaml_ir50.py [--work-dir DIR] [--resume [CKPT]] [--amp]
    tools/dist_train.sh configs/oaml_ir50.py 8

Without CUDA, a distributed launch runs DDP over gloo on CPU processes, and ``--amp`` means
bf16 autocast on the CPU.
"""
import argparse
import os
import os.path as osp

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
        help='autocast dtype: float16 (CUDA, with dynamic loss scaling) or bfloat16 (default '
        'on CPU, where it is the only choice)')
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
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def amp_optim_wrapper(cfg: Config, dtype) -> None:
    """Switch ``cfg.optim_wrapper`` to autocast training on this machine's device."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        if dtype is not None:
            cfg.optim_wrapper.dtype = dtype
        return
    if dtype == 'float16':
        raise ValueError('--amp-dtype float16 needs CUDA; use bfloat16 on the CPU')
    cfg.optim_wrapper.type = 'AutocastOptimWrapper'
    cfg.optim_wrapper.dtype = 'bfloat16'


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
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
            raise KeyError(f'{args.config} has no auto_scale_lr (base_batch_size) setting')
        cfg.auto_scale_lr.enable = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    return cfg


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
