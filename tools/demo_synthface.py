"""The SynthFace main job: generate data, train OAML and its AdaFace baseline, print an ablation.

    python tools/demo_synthface.py                 # the default job (``make demo``)
    python tools/demo_synthface.py --with-noocc    # + AdaFace-only trained without occluders
    python tools/demo_synthface.py --seed 1        # another generator seed (data/synthface_seed1)
    python tools/demo_synthface.py --full          # more identities and epochs, + the 14x14 level
    python tools/demo_synthface.py --quick         # tiny sizes, a few iterations (CI plumbing)

Steps, each skipped when its output exists:

1. SynthFace (``mmoaml.datagen.write_synthface``) under ``--data-root``: a training
   face folder, clean verification pairs over disjoint test identities and held-out pairs
   over identities of the training id range that training never sees (the validation split).
2. Probe-occluded variants of the test and held-out pairs with held-out occluder styles
   (``mmoaml.datagen.occluded_benchmark``): ``clean``, ``mask_probe``, ``niqab_probe``,
   ``sunglasses_probe``, each with pixel masks (the ground truth of ``qaconv_gt``).
3. Training (``tools/train.py --amp``: bf16 autocast on the CPU, channels-last convolutions) of
   ``configs/adaface_synthface.py`` (the fair baseline: same synthetic occluders),
   ``configs/oaml_synthface.py`` and, with ``--with-noocc``, ``configs/adaface_synthface_noocc.py``
   (``--full`` adds ``configs/oaml_synthface_14x14.py``). Same data, schedule and seed for all.
   Models train two at a time, one process and one thread each (``--sequential``: one at a
   time with every core); on 2 cores that is the faster way (docs/synthface.md).
4. For each OAML model, the fusion weight of the combined score is chosen on the held-out
   pairs (``choose_fusion_weight``: mean accuracy over the four held-out protocols), never on
   the test pairs.
5. Testing (``tools/test.py --dump``) on the four test protocols; the per-image features of each
   set are kept in ``<work-dir>/<model>/features``.
6. The ablation table (10-fold verification accuracy, %, with the standard error of an accuracy
   at the number of pairs) and the occlusion head's quality on its grid (mean predicted vs
   ground-truth visibility per protocol, MSE, IoU of the hidden cells) are printed and saved to
   ``<work-dir>/results.json``; ``<work-dir>/visibility.png`` shows predicted (left) and
   ground-truth (right) visibility over test faces.

The training and test commands run as child processes with their logs streamed (prefixed by
the model when two run at once), so progress (iteration, loss, ETA) is visible.
"""
import argparse
import contextlib
import json
import math
import os
import os.path as osp
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: Protocol -> column of the table (test set name in the configs).
PROTOCOLS = (('clean', 'clean'), ('mask_probe', 'mask'), ('niqab_probe', 'niqab'),
             ('sunglasses_probe', 'sunglasses'))
COLUMNS = tuple(name for _, name in PROTOCOLS)
TEST_STEM = 'synthface_clean'
HOLDOUT_STEM = 'synthface_holdout'

#: Data set sizes and epochs: the default job fits 15 minutes on 2 CPU cores, --full an hour;
#: --quick is plumbing only.
SIZES = dict(
    default=dict(num_train_ids=400, images_per_id=20, num_test_ids=200, test_images_per_id=10,
                 num_pairs=1500, num_holdout_ids=100, num_holdout_pairs=600),
    full=dict(num_train_ids=800, images_per_id=20, num_test_ids=300, test_images_per_id=10,
              num_pairs=3000, num_holdout_ids=100, num_holdout_pairs=1000),
    quick=dict(num_train_ids=16, images_per_id=8, num_test_ids=10, test_images_per_id=4,
               num_pairs=40, num_holdout_ids=6, num_holdout_pairs=20),
)
EPOCHS = dict(default=None, full=None, quick=1)

#: Per-image trait jitter of the demo's SynthFace (see configs/_base_/datasets/synthface.py for
#: the measurements behind it; chosen on the AdaFace-only baseline alone).
DEMO_TRAIT_JITTER = 0.0

#: model key -> (config, table rows as (label, score type)).
OAML_ROWS = [
    ('AdaFace branch', 'adaface'),
    ('QAConv, no visibility weighting', 'qaconv_none'),
    ('QAConv, predicted visibility', 'qaconv'),
    ('QAConv, GT visibility (oracle)', 'qaconv_gt'),
    ('combined (AdaFace + QAConv)', 'combined'),
]
MODELS = dict(
    adaface_noocc=('configs/adaface_synthface_noocc.py',
                   [('AdaFace-only, no occluders', 'adaface')]),
    adaface=('configs/adaface_synthface.py',
             [('AdaFace-only + occluders (fair baseline)', 'adaface')]),
    oaml=('configs/oaml_synthface.py', [(f'OAML: {label}', score) for label, score in OAML_ROWS]),
    oaml_14x14=('configs/oaml_synthface_14x14.py',
                [(f'OAML 14x14: {label}', score) for label, score in OAML_ROWS]),
)
#: Where the cosine schedule ends (``param_scheduler`` of synthface_cosine.py); --epochs moves it.
COSINE_SCHEDULER_INDEX = 1


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=0,
                        help='SynthFace generator seed; also seeds training (default 0)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true',
                      help='tiny data and one short epoch: checks the plumbing, not accuracy')
    size.add_argument('--full', action='store_true',
                      help='the longer reference run: 800 identities (twice the iterations), '
                      '3,000 test pairs and the 14x14 feature level too (under an hour on 2 '
                      'cores)')
    parser.add_argument('--with-noocc', action='store_true',
                        help='also train AdaFace-only without synthetic occluders')
    parser.add_argument('--sequential', action='store_true',
                        help='train and test one model at a time with every core (default: two '
                        'at a time, one thread each)')
    parser.add_argument('--work-dir', default=None,
                        help='output folder (default work_dirs/demo, work_dirs/demo_seed<S> '
                        'for other seeds, work_dirs/demo_full with --full, work_dirs/demo_quick '
                        'with --quick)')
    parser.add_argument('--data-root', default=None,
                        help='SynthFace folder (default data/synthface, data/synthface_seed<S> '
                        'for other seeds, data/synthface_full with --full, '
                        '<work-dir>/synthface with --quick)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='training epochs (default: the configs\' schedule; 1 with --quick)')
    parser.add_argument('--workers', type=int, default=2,
                        help='processes rendering SynthFace (default 2)')
    args = parser.parse_args(argv)
    args.size = 'quick' if args.quick else ('full' if args.full else 'default')
    suffix = {'quick': '_quick', 'full': '_full', 'default': ''}[args.size]
    suffix += '' if args.seed == 0 else f'_seed{args.seed}'
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', 'demo' + suffix)
    if args.data_root is None:
        args.data_root = (osp.join(args.work_dir, 'synthface') if args.quick else
                          osp.join('data', 'synthface' + suffix))
    if args.epochs is None:
        args.epochs = EPOCHS[args.size]
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be positive, got {args.epochs}')
    return args


#: Log lines shown in the child's log file only (import warnings, per-parameter listings).
_CONSOLE_NOISE = ('Warning', 'warnings.warn', 'paramwise_options')
_PRINT_LOCK = threading.Lock()


def stage(message: str) -> None:
    with _PRINT_LOCK:
        print(f'\n==> [{time.strftime("%H:%M:%S")}] {message}', flush=True)


# ---------------------------------------------------------------------------------- data


def ensure_synthface(data_root: str, sizes: Dict[str, int], seed: int, workers: int) -> dict:
    """Write SynthFace unless ``data_root/meta.json`` already records the same data set."""
    from mmengine.utils import ProgressBar

    from mmoaml.datagen import SYNTHFACE_VERSION, write_synthface
    meta_path = osp.join(data_root, 'meta.json')
    wanted = dict(sizes, seed=seed, trait_jitter=DEMO_TRAIT_JITTER,
                  generator_version=SYNTHFACE_VERSION)
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        found = {key: meta.get(key) for key in wanted}
        if found == wanted:
            print(f'SynthFace found in {data_root} ({meta["num_train_images"]} training images, '
                  f'{meta["num_pairs"]} pairs)')
            return meta
        raise SystemExit(f'{data_root} holds another SynthFace ({found}); expected {wanted}. '
                         'Remove it or pass --data-root.')
    bar: List[ProgressBar] = []

    def progress(count: int, total: int) -> None:
        if not bar:
            bar.append(ProgressBar(total))
        bar[0].update(count)

    # No occluded training set: the training pipelines draw occluders on the fly.
    meta = write_synthface(data_root, seed=seed, occluded_per_id=0, num_workers=workers,
                           trait_jitter=DEMO_TRAIT_JITTER, progress=progress, **sizes)
    print()
    return meta


def ensure_protocols(data_root: str, stem: str, seed: int) -> None:
    """Write the probe-occluded variants of ``val/<stem>.bin`` (held-out occluder styles)."""
    from mmoaml.datagen import make_occluded_variants
    val_dir = osp.join(data_root, 'val')
    missing = [protocol for protocol, _ in PROTOCOLS
               if not osp.isfile(osp.join(val_dir, f'{stem}_{protocol}_masks.npz'))]
    if not missing:
        print(f'occluded protocols of {stem} found in {val_dir}')
        return
    files = make_occluded_variants(
        osp.join(val_dir, f'{stem}.bin'), val_dir, protocols=missing, seed=seed)
    for protocol, variant in files.items():
        print(f'{protocol:18s} -> {variant.bin}')


# ---------------------------------------------------------------------------------- train/test


def data_options(data_root: str, num_classes: int, stem: str = TEST_STEM) -> List[str]:
    """``--cfg-options`` that point a SynthFace config at ``data_root`` (test sets: the
    protocols of ``val/<stem>.bin``, named by their column)."""
    options = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'model.adaface_head.num_classes={num_classes}',
        f'val_dataloader.0.dataset.data_root={data_root}/val',
    ]
    for i, (protocol, column) in enumerate(PROTOCOLS):
        options += [f'test_dataloader.{i}.dataset.data_root={data_root}/val',
                    f'test_dataloader.{i}.dataset.ann_file={stem}_{protocol}.bin',
                    f'test_dataloader.{i}.dataset.name={column}']
    return options


def epoch_options(epochs: int) -> List[str]:
    """``--cfg-options`` for another number of epochs: the loop and the cosine decay's end."""
    i = COSINE_SCHEDULER_INDEX
    return [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'param_scheduler.{i}.end={epochs}', f'param_scheduler.{i}.T_max={epochs}']


def run(command: List[str], log_path: str, prefix: str = '', threads: Optional[int] = None
        ) -> None:
    """Run a child process, streaming its output to the console (each line after ``prefix``)
    and to ``log_path``; ``threads`` caps its OpenMP/MKL threads."""
    with _PRINT_LOCK:
        print(prefix + '$ ' + ' '.join(command)
              + ('' if threads is None else f'   (OMP_NUM_THREADS={threads})'), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if any(noise in line for noise in _CONSOLE_NOISE):
                continue  # kept in the log file
            with _PRINT_LOCK:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
        code = proc.wait()
    if code:
        raise SystemExit(f'command failed with exit code {code} (log: {log_path}): '
                         + ' '.join(command))


class ModelJob:
    """Train one model (unless its checkpoint exists), choose its fusion weight on the held-out
    pairs (models with a combined score) and test it with a feature dump."""

    def __init__(self, key: str, args: argparse.Namespace, num_classes: int,
                 running: Optional['RunningJobs'] = None) -> None:
        self.key = key
        self.config = MODELS[key][0]
        self.running = running
        self.prefix = f'[{key}] ' if running is not None else ''
        self.work_dir = osp.abspath(osp.join(args.work_dir, key))
        data_root = osp.abspath(args.data_root)
        self.options = [f'randomness.seed={args.seed}']
        if args.quick:
            self.options += ['default_hooks.logger.interval=1']
        if args.epochs is not None:
            self.options += epoch_options(args.epochs)
        self.test_options = data_options(data_root, num_classes) + self.options
        self.holdout_options = data_options(data_root, num_classes, HOLDOUT_STEM) + self.options
        self.fused = any(score == 'combined' for _, score in MODELS[key][1])

    def _run(self, script: str, extra: List[str], options: List[str], log: str) -> None:
        run([sys.executable, script, self.config, *extra, '--work-dir', self.work_dir,
             '--cfg-options', *options], osp.join(self.work_dir, log), self.prefix,
            None if self.running is None else self.running.threads_for(self))

    def _dump(self, checkpoint: str, dump_dir: str, options: List[str], log: str,
              what: str) -> dict:
        from mmoaml.fileio import DUMP_METRICS_FILE
        if not osp.isfile(osp.join(dump_dir, DUMP_METRICS_FILE)):
            stage(f'testing {self.key} on {what}')
            self._run('tools/test.py', [checkpoint, '--dump', dump_dir], options, log)
        with open(osp.join(dump_dir, DUMP_METRICS_FILE)) as f:
            return json.load(f)['metrics']

    def __call__(self) -> dict:
        if self.running is None:
            return self.steps()
        with self.running.entered(self):
            return self.steps()

    def steps(self) -> dict:
        os.makedirs(self.work_dir, exist_ok=True)
        times = {}
        last = osp.join(self.work_dir, 'last_checkpoint')
        start = time.perf_counter()
        if not osp.isfile(last):
            stage(f'training {self.key} ({self.config})')
            self._run('tools/train.py', ['--amp', '--no-validate'], self.test_options,
                      'train.out')
        else:
            print(f'{self.key}: trained checkpoint found ({last})')
        times['train_s'] = time.perf_counter() - start
        with open(last) as f:
            checkpoint = f.read().strip()
        start = time.perf_counter()
        fusion = None
        options = self.test_options
        if self.fused:
            holdout_dir = osp.join(self.work_dir, 'holdout_features')
            self._dump(checkpoint, holdout_dir, self.holdout_options, 'holdout.out',
                       'the held-out pairs (fusion weight)')
            fusion = fusion_weight_from_dumps(holdout_dir)
            w = fusion['w_adaface']
            options = options + [f'test_evaluator.combine_weights=({w},{1.0 - w:.6g})']
            with _PRINT_LOCK:
                print(f'{self.prefix}fusion weight chosen on the held-out pairs: '
                      f'{w:g} AdaFace + {1 - w:g} QAConv', flush=True)
        times['holdout_s'] = time.perf_counter() - start
        dump_dir = osp.join(self.work_dir, 'features')
        start = time.perf_counter()
        metrics = self._dump(checkpoint, dump_dir, options, 'test.out', ', '.join(COLUMNS))
        times['test_s'] = time.perf_counter() - start
        return dict(metrics=metrics, features=dump_dir, checkpoint=checkpoint, fusion=fusion,
                    **times)


def fusion_weight_from_dumps(dump_dir: str) -> dict:
    """The AdaFace weight of the combined score that maximises the mean accuracy over the
    held-out protocols (their dumps in ``dump_dir``)."""
    from mmoaml.evaluation.functional import choose_fusion_weight
    from mmoaml.evaluation.metrics.dump_face_features import dump_metric
    from mmoaml.fileio import load_face_features
    score_sets = []
    for _, column in PROTOCOLS:
        dump = load_face_features(osp.join(dump_dir, f'{column}.npz'))
        metric = dump_metric(dump, score_types=('adaface', 'qaconv'))
        metric.compute_metrics(dump.entries)
        scores = metric.last_pair_scores
        score_sets.append((scores['adaface'], scores['qaconv'], metric.last_issame))
    w, accuracy = choose_fusion_weight(score_sets)
    return dict(w_adaface=w, holdout_mean_accuracy={f'{k:g}': round(100 * v, 2)
                                                    for k, v in accuracy.items()})


class RunningJobs:
    """The model jobs running at a time: a child process started while another job runs gets
    one thread, one started alone every core (the last job's tests need not wait on one core)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: set = set()

    @contextlib.contextmanager
    def entered(self, job: ModelJob):
        with self.lock:
            self.jobs.add(job.key)
        try:
            yield
        finally:
            with self.lock:
                self.jobs.discard(job.key)

    def threads_for(self, job: ModelJob) -> Optional[int]:
        with self.lock:
            return 1 if self.jobs - {job.key} else None


def run_models(keys: List[str], args: argparse.Namespace, num_classes: int) -> Dict[str, dict]:
    """Run the model jobs, two at a time (one thread each while both run) unless
    ``--sequential``."""
    parallel = not args.sequential and len(keys) > 1
    if parallel:
        # This process also scores QAConv (fusion weights) while the other job may run.
        import torch
        torch.set_num_threads(1)
    running = RunningJobs() if parallel else None
    jobs = [ModelJob(key, args, num_classes, running) for key in keys]
    with ThreadPoolExecutor(max_workers=2 if parallel else 1) as pool:
        futures = [pool.submit(job) for job in jobs]
        return {key: future.result() for key, future in zip(keys, futures)}


# ---------------------------------------------------------------------------------- results


def accuracy_rows(results: Dict[str, dict]) -> List[dict]:
    """Table rows (label, model, score type, accuracy % per protocol)."""
    rows = []
    for key, (_, row_specs) in MODELS.items():
        if key not in results:
            continue
        metrics = results[key]['metrics']
        for label, score in row_specs:
            cells = {}
            for column in COLUMNS:
                value = metrics.get(f'{column}/{score}/accuracy')
                if value is None:
                    raise KeyError(f'{key}: no {column}/{score}/accuracy in the test metrics '
                                   f'({sorted(metrics)[:8]}...)')
                # FaceVerificationMetric reports fractions; the table is in %.
                cells[column] = round(100 * value, 2)
            rows.append(dict(label=label, model=key, score=score, accuracy=cells))
    return rows


def occlusion_quality(features: str) -> dict:
    """The occlusion head on its grid, from an OAML model's dumped per-image features: mean
    predicted vs ground-truth visibility per protocol (probes of the occluded protocols, every
    image of the clean one), MSE and IoU of the hidden cells."""
    from mmoaml.evaluation.functional import visibility_summary as summary
    from mmoaml.fileio import load_face_features

    per_protocol, occluded_pred, occluded_gt = {}, [], []
    for _, column in PROTOCOLS:
        dump = load_face_features(osp.join(features, f'{column}.npz'))
        pred = np.stack([e['visibility'].float().numpy() for e in dump.entries])
        gt = np.stack([e['gt_visibility'].float().numpy() for e in dump.entries])
        if column != 'clean':
            # Probe-only protocols: the occluded face of pair k is image 2k + 1.
            pred, gt = pred[1::2], gt[1::2]
            occluded_pred.append(pred)
            occluded_gt.append(gt)
        per_protocol[column] = summary(pred, gt)
    occluded = summary(np.concatenate(occluded_pred), np.concatenate(occluded_gt))
    return dict(grid='x'.join(str(n) for n in pred.shape[-2:]),
                mean_pred_occluded=occluded['mean_pred'],
                mean_pred_clean=per_protocol['clean']['mean_pred'],
                mean_gt_occluded=occluded['mean_gt'], mse_occluded=occluded['mse'],
                iou_hidden_occluded=occluded['iou_hidden'], per_protocol=per_protocol)


def save_figure(data_root: str, features: str, path: str, per_set: int = 4) -> None:
    """Faces of every protocol with predicted (left) and ground-truth (right) visibility."""
    from mmoaml.evaluation.metrics.dump_face_features import load_face_features
    from mmoaml.fileio.image import decode_image
    from mmoaml.fileio.verification_bin import (load_verification_bin, load_visibility_masks,
                                                masks_path_for)
    from mmoaml.visualization import draw_visibility_grid
    images, predicted, gts = [], [], []
    for protocol, column in PROTOCOLS:
        bin_path = osp.join(data_root, 'val', f'{TEST_STEM}_{protocol}.bin')
        encoded, _ = load_verification_bin(bin_path)
        masks = load_visibility_masks(masks_path_for(bin_path))
        entries = load_face_features(osp.join(features, f'{column}.npz')).entries
        # Probes (odd indices) carry the occluder; the clean set shows its probes too.
        for index in range(1, min(len(encoded), 2 * per_set), 2):
            images.append(decode_image(encoded[index], f'{bin_path}#{index}'))
            predicted.append(entries[index]['visibility'].float().numpy()[0])
            gts.append(np.asarray(masks[index], np.float32).squeeze() / 255.0)
    grid = draw_visibility_grid(images, predicted, gts, ncols=per_set)
    if not cv2.imwrite(path, grid):
        raise OSError(f'could not write {path}')


def standard_error(accuracy_percent: float, num_pairs: int) -> float:
    """Binomial standard error (%) of an accuracy measured on ``num_pairs`` pairs."""
    p = accuracy_percent / 100
    return 100 * math.sqrt(p * (1 - p) / num_pairs)


def format_table(rows: List[dict], qualities: Dict[str, dict], num_pairs: int,
                 fusion: Dict[str, Optional[dict]]) -> str:
    width = max(len(r['label']) for r in rows) + 2
    lines = ['10-fold verification accuracy (%), probe-only occlusion, held-out occluder styles; '
             f'{num_pairs} pairs per protocol: standard error {standard_error(90, num_pairs):.2f}'
             f' points at 90 %, {standard_error(60, num_pairs):.2f} at 60 %',
             f'{"":{width}s}' + ''.join(f'{c:>12s}' for c in COLUMNS)]
    lines.append('-' * len(lines[-1]))
    for row in rows:
        lines.append(f'{row["label"]:{width}s}' +
                     ''.join(f'{row["accuracy"][c]:12.2f}' for c in COLUMNS))
    for key, chosen in fusion.items():
        if chosen is not None:
            lines.append(f'{key}: combined = {chosen["w_adaface"]:g} x AdaFace + '
                         f'{1 - chosen["w_adaface"]:g} x QAConv (standardised scores; weight '
                         'chosen on the held-out pairs)')
    for key, q in qualities.items():
        lines += [
            '',
            f'{key} occlusion head ({q["grid"]}): mean predicted visibility '
            f'{q["mean_pred_occluded"]:.3f} on occluded probes (GT {q["mean_gt_occluded"]:.3f}) '
            f'vs {q["mean_pred_clean"]:.3f} on clean faces; MSE {q["mse_occluded"]:.4f}, IoU of '
            f'hidden cells {q["iou_hidden_occluded"]:.3f} (occluded probes)',
        ]
        for column, v in q['per_protocol'].items():
            lines.append(f'  {column:11s} mean pred {v["mean_pred"]:.3f}  mean GT '
                         f'{v["mean_gt"]:.3f}  MSE {v["mse"]:.4f}  IoU(hidden) '
                         f'{v["iou_hidden"]:.3f}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    os.chdir(REPO)
    from mmoaml.utils import register_all_modules
    register_all_modules()
    os.makedirs(args.work_dir, exist_ok=True)
    sizes = SIZES[args.size]
    timings = {}
    job_start = time.perf_counter()

    stage(f'SynthFace (seed {args.seed}) in {args.data_root}')
    start = time.perf_counter()
    meta = ensure_synthface(args.data_root, sizes, args.seed, args.workers)
    for stem in (TEST_STEM, HOLDOUT_STEM):
        ensure_protocols(args.data_root, stem, args.seed)
    timings['data_s'] = time.perf_counter() - start

    keys = (['adaface_noocc'] if args.with_noocc else []) + ['adaface', 'oaml']
    if args.full:
        # The slowest model first: it trains beside the baseline, then OAML takes the slot
        # the baseline leaves, so the two slots end at about the same time.
        keys.insert(0, 'oaml_14x14')
    start = time.perf_counter()
    results = run_models(keys, args, meta['num_train_ids'])
    timings['models_s'] = time.perf_counter() - start
    for key in keys:
        for part in ('train_s', 'holdout_s', 'test_s'):
            timings[f'{key}_{part}'] = results[key][part]

    stage('results')
    rows = accuracy_rows(results)
    fused = [key for key in keys if results[key]['fusion'] is not None]
    qualities = {key: occlusion_quality(results[key]['features']) for key in fused}
    figure = osp.join(args.work_dir, 'visibility.png')
    save_figure(args.data_root, results['oaml']['features'], figure)
    timings['total_s'] = time.perf_counter() - job_start
    fusion = {key: results[key]['fusion'] for key in keys}
    table = format_table(rows, qualities, meta['num_pairs'], fusion)
    summary = dict(
        command=' '.join(['python tools/demo_synthface.py'] +
                         list(sys.argv[1:] if argv is None else argv)),
        seed=args.seed,
        size=args.size,
        quick=args.quick,
        parallel=not args.sequential,
        synthface=dict(meta, data_root=args.data_root),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     cpu_count=os.cpu_count()),
        columns=list(COLUMNS),
        rows=[dict(row, standard_error={c: round(standard_error(v, meta['num_pairs']), 2)
                                        for c, v in row['accuracy'].items()})
              for row in rows],
        fusion=fusion,
        occlusion_head=qualities.get('oaml'),
        occlusion_heads=qualities,
        checkpoints={key: r['checkpoint'] for key, r in results.items()},
        timings_s={key: round(value, 1) for key, value in timings.items()},
        table=table)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print('\n' + table)
    print(f'\nsaved {osp.join(args.work_dir, "results.json")} and {figure} '
          f'({timings["total_s"] / 60:.1f} min in all)')
    return summary


if __name__ == '__main__':
    main()
