"""Test a checkpoint on the config's test sets and print a results table (MMPretrain-style).

    python tools/test.py configs/oaml_ir50.py work_dirs/oaml_ir50/epoch_28.pth
    python tools/test.py CONFIG CKPT --dump work_dirs/features   # + per-image features
    python tools/analysis_tools/eval_features.py work_dirs/features  # same numbers, offline
    python tools/test.py CONFIG CKPT --show-dir work_dirs/vis    # ROC curves, overlays (PNG)
    python tools/test.py CONFIG CKPT --out results.json          # the metrics dict
    python tools/test.py CONFIG CKPT --out pred.npz              # per-image predictions
    tools/dist_test.sh CONFIG CKPT 8
    tools/slurm_test.sh PARTITION JOB CONFIG CKPT

The table has one row per test set and, per score type, the accuracy and TAR@FAR columns,
plus their mean over the sets. Without CUDA, a distributed launch runs over gloo on CPU
processes. Checkpoints load through mmoaml's safe loader; ``--trust-checkpoint`` opts in to
full unpickling for a trusted file that needs more than weights and MMEngine's state.

The checkpoint must fit the model: missing, unexpected or mis-shaped keys are an error that
lists them (and points to the AdaFace converter for unconverted AdaFace keys), and NaN/inf
weights are an error naming the tensors, so no table is ever printed for a randomly
initialised or broken model. ``--non-strict`` loads the matching keys of a partial checkpoint
with a warning listing the others.

MMPretrain's flags, with these semantics:

- ``--out FILE`` writes on rank 0, without pickle, by extension: ``.json`` holds the metrics
  dict (``--out-item metrics``, the default for ``.json``); ``.npz`` holds with
  ``--out-item pred`` (the default for ``.npz``) per verification set ``<set>/sample_idx``,
  ``<set>/issame``, ``<set>/pair_idx`` and the per-image fields the set's
  ``FaceVerificationMetric`` collects (``<set>/embedding``, ``<set>/feature_map`` (float16),
  ``<set>/visibility``, ``<set>/gt_visibility``; the layout of
  :mod:`mmoaml.fileio.feature_dump`, collected by ``DumpFaceFeatures`` into ``FILE.parts/``,
  which is removed afterwards) plus ``<set>/scores/<score type>``, the per-pair scores; with
  ``--out-item metrics`` one 0-d float64 array per metric key. Every array loads with
  ``numpy.load(FILE, allow_pickle=False)``. ``--out-item pred`` with a ``.json`` file is refused.
- ``--amp`` sets ``test_cfg.fp16=True``: MMEngine's ``TestLoop`` and mmoaml's ``MultiTestLoop``
  run the model under MMEngine's ``autocast`` (bfloat16 on CPU).
- ``--show-dir DIR`` writes ``DIR/roc_<set>.png`` (TAR against FAR, log FAR axis, one curve per
  score type) for every verification set and ``DIR/<set>.png``, the visibility overlays (only
  for models that predict visibility; skipped with a warning otherwise).
- ``--show`` cannot open windows on the headless machines this runs on: it writes the same
  figures to ``<work_dir>/<timestamp>/show/`` (``--show-dir`` if given) and logs each path.
- ``--cfg-options`` is applied after every flag that sets a config key (``--work-dir``,
  ``--amp``, ``--no-pin-memory``, ``--no-persistent-workers``), as in MMPretrain, so an option
  wins over a flag on the same key; only ``persistent_workers=False`` where ``num_workers=0``
  (torch refuses anything else) and the evaluators added by ``--dump``/``--out`` follow it.

Rank 0 also writes ``<work_dir>/verification_threshold.json``: the score threshold of every
score type at ``--threshold-far`` (default 1e-3, :func:`mmoaml.evaluation.functional.tar_at_far`,
"same" iff ``score > threshold``; AdaFace scores are cosines) on the first verification test
set, or the one named by ``--threshold-set``, as ``verification_threshold`` (score type ->
float) and ``verification_far``, with the TAR and achieved FAR there and every set's thresholds
under ``per_set``. ``tools/model_converters/publish_model.py --threshold-json`` stores the two
keys in a published checkpoint's ``meta``. The ``combined`` score is standardised over the set,
so its threshold only holds for scores standardised with comparable statistics.
"""
import argparse
import contextlib
import copy
import json
import logging
import os
import os.path as osp
import shutil
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, Runner

from mmoaml.engine import close_distributed, setup_cpu_distributed
from mmoaml.evaluation import format_results_table
from mmoaml.evaluation.functional import tar_at_far
from mmoaml.evaluation.metrics.face_verification import SCORE_TYPES, FaceVerificationMetric
from mmoaml.fileio import (DUMP_METRICS_FILE, CheckpointMismatchError,
                           install_safe_checkpoint_loader, load_model_state, trusted_checkpoints)
from mmoaml.registry import RUNNERS
from mmoaml.utils import check_data_files, register_all_modules
from mmoaml.utils.setup_env import setup_dataloaders
from mmoaml.visualization import draw_visibility_grid, save_roc_curves

_VERIFICATION_METRICS = ('FaceVerificationMetric', 'mmoaml.FaceVerificationMetric')
#: Written by rank 0 into the work dir: the verification thresholds at ``--threshold-far``.
THRESHOLD_FILE = 'verification_threshold.json'
_OUT_EXTENSIONS = ('.json', '.npz')
# FaceVerificationMetric's default score types (what it collects when the config names none).
_DEFAULT_SCORE_TYPES = ('adaface', 'qaconv', 'combined')


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
        '--out',
        metavar='FILE',
        help='write the results without pickle: FILE.json (the metrics dict) or FILE.npz '
        '(per-set arrays of --out-item)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds: the metrics, or per-image predictions (embeddings, feature maps, '
        'visibility) and per-pair scores (.npz only). Default: metrics for .json, pred for .npz')
    parser.add_argument(
        '--amp', action='store_true', help='test under autocast (sets test_cfg.fp16=True)')
    parser.add_argument(
        '--show',
        action='store_true',
        help='no window is opened (headless): write the --show-dir figures to '
        '<work_dir>/<timestamp>/show (or --show-dir) and log their paths')
    parser.add_argument(
        '--show-dir',
        metavar='DIR',
        help='save DIR/roc_<set>.png (ROC curves of each verification set) and DIR/<set>.png '
        '(the first --show-num faces of each set with the predicted visibility (left) and the '
        'ground truth (right), for models that predict visibility)')
    parser.add_argument(
        '--show-num', type=int, default=32, help='faces per set for --show-dir (default 32)')
    parser.add_argument(
        '--threshold-far',
        type=float,
        default=1e-3,
        help=f'FAR of the thresholds written to <work_dir>/{THRESHOLD_FILE} (default 1e-3)')
    parser.add_argument(
        '--threshold-set',
        metavar='NAME',
        help='test set whose thresholds are written (default: the first verification set)')
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
    if not 0 < args.threshold_far <= 1:
        parser.error(f'--threshold-far must lie in (0, 1], got {args.threshold_far}')
    if args.out is None:
        if args.out_item is not None:
            parser.error('--out-item needs --out FILE')
    else:
        ext = osp.splitext(args.out)[1].lower()
        if ext not in _OUT_EXTENSIONS:
            parser.error(f'--out must end with .json or .npz, got {args.out!r}')
        if args.out_item is None:
            args.out_item = 'metrics' if ext == '.json' else 'pred'
        if args.out_item == 'pred' and ext == '.json':
            parser.error('--out-item pred writes arrays: give an .npz file')
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
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    setup_dataloaders(cfg, args.no_pin_memory, args.no_persistent_workers)
    # Last of the settings, as in MMPretrain: an option wins over a flag on the same key.
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    setup_dataloaders(cfg)  # persistent_workers=False wherever an option left num_workers=0
    # The dumps record their set's final metric arguments, so they follow the options.
    if args.dump is not None:
        add_feature_dump(cfg, args.dump)
    if args.out is not None and args.out_item == 'pred':
        add_feature_dump(cfg, _parts_dir(args.out), match_metric=True)
    if cfg.launcher != 'none' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    return cfg


def add_feature_dump(cfg: Config, out_dir: str, match_metric: bool = False) -> None:
    """Append a ``DumpFaceFeatures`` to the evaluator of every verification test set.

    The per-set evaluators are laid out the way the multi-set loops read them (one config for
    all sets is copied per set). Each dump records its set's ``FaceVerificationMetric``
    arguments and stores every field the model provides: all score types when the model has a
    QAConv head, else the embeddings only. With ``match_metric`` (``--out-item pred``) it
    stores the fields of the set's metric's own score types instead, which every set that the
    metric scores provides (no ground-truth visibility needed unless ``qaconv_gt`` is scored).
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
        if match_metric:
            score_types = list(metric_cfg.get('score_types', _DEFAULT_SCORE_TYPES))
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


def verification_results(runner: Runner) -> Dict[str, FaceVerificationMetric]:
    """Set name -> the set's ``FaceVerificationMetric`` holding the per-pair scores of the test
    just run (on rank 0, where the metrics are computed; sets without one are left out)."""
    loop = runner.test_loop
    evaluators = getattr(loop, 'evaluators', None) or [loop.evaluator]
    found = {}
    for (name, _), evaluator in zip(evaluated_sets(runner), evaluators):
        for metric in evaluator.metrics:
            if (isinstance(metric, FaceVerificationMetric)
                    and metric.last_pair_scores is not None):
                found[name] = metric
                break
    return found


def save_roc_figures(results: Dict[str, FaceVerificationMetric], out_dir: str) -> List[str]:
    """Write ``out_dir/roc_<set>.png`` for each verification set (the metric's FARs marked)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, metric in results.items():
        path = osp.join(out_dir, f'roc_{name}.png')
        save_roc_curves(path, metric.last_pair_scores, metric.last_issame, title=name,
                        far_marks=metric.far)
        paths.append(path)
    return paths


def verification_thresholds(results: Dict[str, FaceVerificationMetric], far: float,
                            set_name: Optional[str] = None) -> Dict[str, Any]:
    """The score thresholds at ``far`` of the first (or the named) verification set.

    Returns:
        dict: ``verification_threshold`` (score type -> float), ``verification_far``,
        ``verification_score_stats`` (the set's ``adaface``/``qaconv`` score means and
        population standard deviations: the z-scores of the ``combined`` threshold, frozen for
        single pairs, see ``mmoaml.apis.FaceVerifier``), ``verification_set``, ``tar`` and
        ``achieved_far`` (score type -> float), ``num_impostors`` and ``per_set`` (set -> score
        type -> threshold).
    """
    if not results:
        raise ValueError('no test set was scored by a FaceVerificationMetric')
    if set_name is None:
        set_name = next(iter(results))
    elif set_name not in results:
        raise ValueError(f'--threshold-set {set_name!r} is not a verification test set; they '
                         f'are {list(results)}')
    points = {
        name: {t: tar_at_far(s, metric.last_issame, (far, ))[0]
               for t, s in metric.last_pair_scores.items()}
        for name, metric in results.items()
    }
    chosen = points[set_name]
    scores = results[set_name].last_pair_scores
    return dict(
        verification_threshold={t: p.threshold for t, p in chosen.items()},
        verification_far=float(far),
        verification_score_stats={
            t: dict(mean=float(np.mean(scores[t])), std=float(np.std(scores[t])))
            for t in ('adaface', 'qaconv') if t in scores},
        verification_set=set_name,
        tar={t: p.tar for t, p in chosen.items()},
        achieved_far={t: p.achieved_far for t, p in chosen.items()},
        num_impostors=next(iter(chosen.values())).num_impostors,
        rule='same identity iff score > threshold (adaface: cosine of the embeddings)',
        per_set={name: {t: p.threshold for t, p in per_type.items()}
                 for name, per_type in points.items()})


def _parts_dir(out_file: str) -> str:
    """Where ``--out-item pred`` collects the per-set dumps before merging them."""
    return f'{out_file}.parts'


def write_out_file(path: str, item: str, metrics: Dict[str, float],
                   results: Dict[str, FaceVerificationMetric]) -> None:
    """Write ``--out``: JSON metrics, or an ``.npz`` of the metrics or of the predictions.

    The ``.npz`` is written array by array (no pickle) under a temporary name, then renamed.
    """
    out_dir = osp.dirname(osp.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        if path.lower().endswith('.json'):
            with open(tmp, 'w') as f:
                json.dump(metrics, f, indent=1)
        else:
            with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key, array in _out_arrays(path, item, metrics, results):
                    with archive.open(f'{key}.npy', 'w', force_zip64=True) as f:
                        np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    if item == 'pred':
        shutil.rmtree(_parts_dir(path), ignore_errors=True)


def _out_arrays(path: str, item: str, metrics: Dict[str, float],
                results: Dict[str, FaceVerificationMetric]):
    if item == 'metrics':
        for key, value in metrics.items():
            yield key, np.float64(value)
        return
    parts = _parts_dir(path)
    for name, metric in results.items():
        with np.load(osp.join(parts, f'{name}.npz'), allow_pickle=False) as dump:
            for key in dump.files:
                if key != 'meta' and not key.startswith('qaconv_head.'):
                    yield f'{name}/{key}', dump[key]
        for score_type, scores in metric.last_pair_scores.items():
            yield f'{name}/scores/{score_type}', scores


@torch.no_grad()
def save_visibility_grids(runner: Runner, out_dir: str, num_images: int) -> List[str]:
    """Draw the first ``num_images`` faces of each test set with predicted and GT visibility.

    Runs the model on those faces again (rank 0 only, unwrapped, so any world size draws the
    same faces) and writes ``out_dir/<set>.png``. Sets whose model output has no visibility
    (no occlusion head) are skipped with a warning.
    """
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, loader in evaluated_sets(runner):
        items = [loader.dataset[i] for i in range(min(num_images, len(loader.dataset)))]
        outputs = model.test_step(loader.collate_fn(items))
        if any(out.get('visibility') is None for out in outputs):
            print_log(f'visibility overlays: the model predicts no visibility for set {name!r} '
                      '(it needs an occlusion head that weights QAConv); none drawn',
                      logger='current', level=logging.WARNING)
            continue
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
    try:  # before anything is built: one message naming every missing file and its source
        check_data_files(cfg, stages=('test', ))
    except FileNotFoundError as error:
        raise SystemExit(f'tools/test.py {args.config}: {error}') from None
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    load_checkpoints_checked(runner, strict=not args.non_strict)
    names = [name for name, _ in evaluated_sets(runner)]
    if args.threshold_set is not None and args.threshold_set not in names:
        raise ValueError(f'--threshold-set {args.threshold_set!r} is not a test set; they are '
                         f'{names}')
    trust = trusted_checkpoints() if args.trust_checkpoint else contextlib.nullcontext()
    with trust:
        metrics = runner.test()
    if not is_main_process():
        return metrics
    if args.dump is not None:
        with open(osp.join(args.dump, DUMP_METRICS_FILE), 'w') as f:
            json.dump(dict(sets=names, metrics=metrics), f, indent=1)
    try:
        print(format_results_table(metrics))
    except ValueError as error:  # e.g. only identification sets: nothing to tabulate
        print_log(f'no results table: {error}', logger='current', level=logging.WARNING)
    results = verification_results(runner)
    if results:
        thresholds = verification_thresholds(results, args.threshold_far, args.threshold_set)
        path = osp.join(runner.work_dir, THRESHOLD_FILE)
        with open(path, 'w') as f:
            json.dump(thresholds, f, indent=1)
        print_log(f'verification thresholds at FAR={args.threshold_far:g} on '
                  f'{thresholds["verification_set"]!r}: {path}', logger='current')
    else:
        print_log(f'no verification set: no {THRESHOLD_FILE}', logger='current',
                  level=logging.WARNING)
    if args.out is not None:
        write_out_file(args.out, args.out_item, metrics, results)
        print_log(f'--out ({args.out_item}): {args.out}', logger='current')
    show_dir = args.show_dir
    if show_dir is None and args.show:
        show_dir = osp.join(runner.log_dir, 'show')
    if show_dir is not None:
        for path in save_roc_figures(results, show_dir):
            print_log(f'ROC curves: {path}', logger='current')
        for path in save_visibility_grids(runner, show_dir, args.show_num):
            print_log(f'visibility overlays: {path}', logger='current')
    return metrics


if __name__ == '__main__':
    try:
        main()
    finally:  # before interpreter shutdown, which gloo's threads may not survive
        close_distributed()
