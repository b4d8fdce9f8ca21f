"""Test a checkpoint on the config's test sets and print a results table (MMPretrain-style).

    python tools/test.py configs/oaml_ir50.py work_dirs/oaml_ir50/epoch_28.pth
    python tools/test.py CONFIG CKPT --dump work_dirs/features   # + per-image features
    python tools/analysis_tools/eval_features.py work_dirs/features  # same numbers, offline
    python tools/test.py CONFIG CKPT --show-dir work_dirs/vis    # visibility overlays (PNG)
    tools/dist_test.sh CONFIG CKPT 8

The table has one row per test set and, per score type, the accuracy and TAR@FAR columns,
plus their mean over the sets. Without CUDA, a distributed launch runs over gloo on CPU
processes. Checkpoints load through mmoaml's safe loader; ``--trust-checkpoint`` opts in to
full unpickling for a trusted file that needs more than weights and MMEngine's state.

The checkpoint must fit the model: missing, unexpected or mis-shaped keys are an error that
lists them (and points to the AdaFace converter for unconverted AdaFace keys), and NaN/inf
weights are an error naming the tensors, so no table is ever printed for a randomly
initialised or broken model. ``--non-strict`` loads the matching keys of a partial checkpoint
with a warning listing the others.
"""
import argparse
import contextlib
import copy
import json
import logging
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, Runner

from mmoaml.engine import setup_cpu_distributed
from mmoaml.evaluation import format_results_table
from mmoaml.evaluation.metrics.face_verification import SCORE_TYPES
from mmoaml.fileio import (DUMP_METRICS_FILE, CheckpointMismatchError,
                           install_safe_checkpoint_loader, load_model_state, trusted_checkpoints)
from mmoaml.registry import RUNNERS
from mmoaml.utils import register_all_modules
from mmoaml.utils.setup_env import setup_dataloaders
from mmoaml.visualization import draw_visibility_grid

_VERIFICATION_METRICS = ('FaceVerificationMetric', 'mmoaml.FaceVerificationMetric')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test an mmoaml model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--dump',
        metavar='DIR',
        help='write each verification set\'s per-image features, the QAConv head and the '
        'metric config to DIR/<set>.npz (score them with '
        'tools/analysis_tools/eval_features.py)')
    parser.add_argument(
        '--show-dir',
        metavar='DIR',
        help='save DIR/<set>.png: the first --show-num faces of each set with the predicted '
        'visibility (left) and the ground truth (right)')
    parser.add_argument(
        '--show-num', type=int, default=32, help='faces per set for --show-dir (default 32)')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='fully unpickle the checkpoint (can run code from the file: trusted files only)')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='load a checkpoint whose keys differ from the model\'s: the matching keys are '
        'loaded, the others listed in a warning (default: an error)')
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
        help='override config settings, e.g. test_dataloader.0.batch_size=32')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.show_num < 1:
        parser.error(f'--show-num must be positive, got {args.show_num}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    setup_dataloaders(cfg, args.no_pin_memory, args.no_persistent_workers)
    if args.dump is not None:
        add_feature_dump(cfg, args.dump)
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    return cfg


def add_feature_dump(cfg: Config, out_dir: str) -> None:
    """Append a ``DumpFaceFeatures`` to the evaluator of every verification test set.

    The per-set evaluators are laid out the way the multi-set loops read them (one config for
    all sets is copied per set). Each dump records its set's ``FaceVerificationMetric``
    arguments and stores every field the model provides: all score types when the model has a
    QAConv head, else the embeddings only.
    """
    loaders, evaluators = cfg.get('test_dataloader'), cfg.get('test_evaluator')
    if loaders is None or evaluators is None:
        raise ValueError('--dump: the config has no test_dataloader/test_evaluator')
    if not isinstance(loaders, (list, tuple)):
        per_set = [evaluators]
    elif isinstance(evaluators, (list, tuple)):
        per_set = list(evaluators)
    else:
        per_set = [copy.deepcopy(evaluators) for _ in loaders]
    has_qaconv = cfg.model.get('qaconv_head') is not None
    score_types = list(SCORE_TYPES) if has_qaconv else ['adaface']
    dumped = 0
    for i, evaluator in enumerate(per_set):
        metrics, rebuild = _metric_cfgs(evaluator)
        verification = [m for m in metrics if m.get('type') in _VERIFICATION_METRICS]
        if not verification:
            continue
        metric_cfg = _plain(verification[0])
        metric_cfg.pop('type')
        metrics.append(
            dict(type='DumpFaceFeatures', out_dir=out_dir, score_types=score_types,
                 metric_cfg=metric_cfg))
        per_set[i] = rebuild(metrics)
        dumped += 1
    if not dumped:
        raise ValueError('--dump: no test set is evaluated with a FaceVerificationMetric')
    cfg.test_evaluator = per_set if isinstance(loaders, (list, tuple)) else per_set[0]


def _metric_cfgs(evaluator) -> Tuple[List[dict], Callable[[List[dict]], object]]:
    """The metric configs of one set's evaluator config, and how to put a new list back."""
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        inner = evaluator['metrics']
        metrics = list(inner) if isinstance(inner, (list, tuple)) else [inner]
        return metrics, lambda new: dict(evaluator, metrics=new)
    if isinstance(evaluator, dict):
        return [evaluator], list
    if isinstance(evaluator, (list, tuple)):
        return list(evaluator), list
    raise TypeError(f'--dump: test_evaluator entries must be config dicts or lists of them, '
                    f'got {type(evaluator).__name__}')


def _plain(cfg) -> dict:
    return cfg.to_dict() if isinstance(cfg, ConfigDict) else copy.deepcopy(dict(cfg))


def load_checkpoints_checked(runner: Runner, strict: bool = True) -> None:
    """Make ``runner`` load its checkpoint through mmoaml's checks instead of MMEngine's.

    MMEngine's ``Runner.load_checkpoint`` loads with ``strict=False`` and accepts NaN weights,
    so a checkpoint of other keys leaves the model randomly initialised and still gives a
    results table. ``runner.test()`` calls ``load_checkpoint`` after the ``before_run`` hooks
    (checkpoint-related hooks rely on that order); this replaces it on this runner only with
    the same steps: load, ``after_load_checkpoint`` hooks, then
    :func:`mmoaml.fileio.load_model_state`.

    Args:
        runner (Runner): The runner whose ``load_from`` is the checkpoint.
        strict (bool): Missing or unexpected keys are an error. Defaults to True.
    """

    def load_checkpoint(filename: str, map_location='cpu', **_) -> dict:
        checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
        runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            load_model_state(model, checkpoint, filename, strict=strict)
        except CheckpointMismatchError as error:
            if error.mismatched:  # shapes cannot be loaded either way
                raise
            raise CheckpointMismatchError(
                f'{error} Pass --non-strict to load the matching keys anyway.', error.missing,
                error.unexpected) from None
        runner.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    runner.load_checkpoint = load_checkpoint


def evaluated_sets(runner: Runner) -> List[Tuple[str, torch.utils.data.DataLoader]]:
    """``(name, loader)`` of every test set, in evaluation order."""
    loop = runner.test_loop
    if hasattr(loop, 'dataloaders'):
        return list(zip(loop.set_names, loop.dataloaders))
    metainfo = getattr(loop.dataloader.dataset, 'metainfo', None) or {}
    return [(str(metainfo.get('name', 'test')), loop.dataloader)]


@torch.no_grad()
def save_visibility_grids(runner: Runner, out_dir: str, num_images: int) -> List[str]:
    """Draw the first ``num_images`` faces of each test set with predicted and GT visibility.

    Runs the model on those faces again (rank 0 only, unwrapped, so any world size draws the
    same faces) and writes ``out_dir/<set>.png``.
    """
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, loader in evaluated_sets(runner):
        items = [loader.dataset[i] for i in range(min(num_images, len(loader.dataset)))]
        outputs = model.test_step(loader.collate_fn(items))
        if any(out.get('visibility') is None for out in outputs):
            raise ValueError(f'--show-dir: the model predicts no visibility for set {name!r} '
                             '(it needs an occlusion head that weights QAConv)')
        images = [item['inputs'].permute(1, 2, 0).numpy() for item in items]
        predicted = [out.visibility[0].float().numpy() for out in outputs]
        gt = None
        if all(out.get('gt_visibility') is not None for out in outputs):
            gt = [out.gt_visibility[0].float().numpy() for out in outputs]
        path = osp.join(out_dir, f'{name}.png')
        if not cv2.imwrite(path, draw_visibility_grid(images, predicted, gt)):
            raise OSError(f'--show-dir: could not write {path}')
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    install_safe_checkpoint_loader()  # as register_all_modules does; stated for the reader
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    load_checkpoints_checked(runner, strict=not args.non_strict)
    trust = trusted_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        metrics = runner.test()
    if not is_main_process():
        return metrics
    if args.dump is not None:
        names = [name for name, _ in evaluated_sets(runner)]
        with open(osp.join(args.dump, DUMP_METRICS_FILE), 'w') as f:
            json.dump(dict(sets=names, metrics=metrics), f, indent=1)
    try:
        print(format_results_table(metrics))
    except ValueError as error:  # e.g. only identification sets: nothing to tabulate
        print_log(f'no results table: {error}', logger='current', level=logging.WARNING)
    if args.show_dir is not None:
        for path in save_visibility_grids(runner, args.show_dir, args.show_num):
            print_log(f'visibility overlays: {path}', logger='current')
    return metrics


if __name__ == '__main__':
    main()
