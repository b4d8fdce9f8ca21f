"""Train a model from a config (MMPretrain-style arguments).

    python tools/train.py configs/oaml_ir50.py [--work-dir DIR] [--resume [CKPT|auto]] [--amp]
    tools/dist_train.sh configs/oaml_ir50.py 8

Without CUDA, a distributed launch runs DDP over gloo on CPU processes. ``--amp`` selects
``AutocastOptimWrapper`` everywhere: float16 with dynamic loss scaling on CUDA (``--amp-dtype
bfloat16`` for bf16), bfloat16 on the CPU; non-finite losses stay skipped.

``--resume`` alone resumes from the latest checkpoint of the work dir and is an error when
there is none; ``--resume auto`` resumes when there is one and else starts afresh (MMEngine's
``resume=True``); ``--resume CKPT`` resumes from that file. Before the Runner is built, the
config is checked for mistakes that would otherwise only show as a useless run (a PKSampler
batch size that differs from its loader's), every loader with ``num_workers=0`` gets
``persistent_workers=False``, and the data files of the train and val loaders must exist
(``mmoaml.utils.check_data_files``: one error naming every missing file and its source, before
anything is built). Checkpoints load through mmoaml's safe loader
(``mmoaml.fileio.checkpoint``).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner, find_latest_checkpoint

from mmoaml.datasets.samplers.pk_sampler import check_pk_batch_size
from mmoaml.engine import close_distributed, setup_cpu_distributed
from mmoaml.fileio import install_safe_checkpoint_loader
from mmoaml.registry import RUNNERS
from mmoaml.utils import check_data_files, register_all_modules
from mmoaml.utils.setup_env import setup_dataloaders

#: ``--resume`` without a value: the work dir's latest checkpoint, which must exist.
RESUME_LATEST = 'latest'
#: ``--resume auto``: the latest checkpoint if there is one, else a fresh start.
RESUME_AUTO = 'auto'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train an mmoaml model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const=RESUME_LATEST,
        metavar='CKPT|auto',
        help='resume from the given checkpoint; without a value, from the latest checkpoint in '
        'the work dir (an error if there is none); "auto": from the latest if there is one, '
        'else start from scratch')
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
        '--no-pin-memory',
        action='store_true',
        help='set pin_memory=False in every dataloader of the config')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='set persistent_workers=False in every dataloader of the config')
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
    """Apply the command line to ``cfg``: ``--cfg-options`` first, then the named flags.

    Then checks the result: a bare ``--resume`` needs a checkpoint in the work dir, a
    PKSampler's ``batch_size`` must be its loader's; and loaders without workers get
    ``persistent_workers=False``.
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        amp_optim_wrapper(cfg, args.amp_dtype)
    if args.resume == RESUME_AUTO:
        cfg.resume = True
        cfg.load_from = None
    elif args.resume == RESUME_LATEST:
        # MMEngine's resume=True starts from scratch when there is nothing to resume, which
        # turns a wrong --work-dir into a silent new run.
        latest = find_latest_checkpoint(cfg.work_dir)
        if latest is None:
            raise FileNotFoundError(
                f'--resume: no checkpoint to resume in the work dir {cfg.work_dir} (no '
                'last_checkpoint file); give --resume CKPT, or --resume auto to start from '
                'scratch when there is none')
        cfg.resume = True
        cfg.load_from = latest
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
    setup_dataloaders(cfg, args.no_pin_memory, args.no_persistent_workers)
    check_pk_batch_size(cfg.get('train_dataloader'))
    return cfg


def main() -> None:
    args = parse_args()
    register_all_modules(init_default_scope=False)
    install_safe_checkpoint_loader()  # as register_all_modules does; stated for the reader
    cfg = merge_args(Config.fromfile(args.config), args)
    try:
        # val only when validation runs (--no-validate removes val_dataloader)
        check_data_files(cfg, stages=('train', 'val'))
    except FileNotFoundError as err:
        sys.exit(f'tools/train.py {args.config}: {err}')
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    try:
        main()
    finally:  # before interpreter shutdown, which gloo's threads may not survive
        close_distributed()
