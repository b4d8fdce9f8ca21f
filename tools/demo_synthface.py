"""The SynthFace main job: generate data, train OAML and its AdaFace baseline, print an ablation.

    python tools/demo_synthface.py                 # the default job (``make demo``)
    python tools/demo_synthface.py --with-noocc    # + AdaFace-only trained without occluders
    python tools/demo_synthface.py --seed 1        # another generator seed (data/synthface_seed1)
    python tools/demo_synthface.py --quick         # tiny sizes, a few iterations (CI plumbing)

Steps, each skipped when its output exists:

1. SynthFace (``mmoaml.datagen.write_synthface``) under ``--data-root``: a training
   face folder and clean verification pairs over disjoint identities.
2. Probe-occluded variants of the pairs with held-out occluder styles
   (``mmoaml.datagen.occluded_benchmark``): ``clean``, ``mask_probe``, ``niqab_probe``,
   ``sunglasses_probe``, each with pixel masks (the ground truth of ``qaconv_gt``).
3. Training (``tools/train.py --amp``: bf16 autocast on the CPU, channels-last convolutions) of
   ``configs/adaface_synthface.py`` (the fair baseline: same synthetic occluders),
   ``configs/oaml_synthface.py`` and, with ``--with-noocc``, ``configs/adaface_synthface_noocc.py``.
   Same data, schedule and seed for all.
4. Testing (``tools/test.py --dump``) on the four protocols; the per-image features of each set
   are kept in ``<work-dir>/<model>/features``.
5. The ablation table (10-fold verification accuracy, %) and the occlusion head's quality on the
   7x7 grid (mean predicted visibility on occluded probes vs clean faces, MSE, IoU of the hidden
   cells) are printed and saved to ``<work-dir>/results.json``; ``<work-dir>/visibility.png``
   shows predicted (left) and ground-truth (right) visibility over test faces.

The training and test commands run as child processes with their logs streamed, so progress
(iteration, loss, ETA) is visible while the job runs.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: Protocol -> column of the table (test set name in the configs).
PROTOCOLS = (('clean', 'clean'), ('mask_probe', 'mask'), ('niqab_probe', 'niqab'),
             ('sunglasses_probe', 'sunglasses'))
COLUMNS = tuple(name for _, name in PROTOCOLS)
BIN_STEM = 'synthface_clean'

#: Data set sizes: the default job fits 15 minutes on 2 CPU cores; --quick is plumbing only.
SIZES = dict(
    default=dict(num_train_ids=400, images_per_id=20, num_test_ids=200, test_images_per_id=10,
                 num_pairs=1500),
    quick=dict(num_train_ids=16, images_per_id=8, num_test_ids=10, test_images_per_id=4,
               num_pairs=40),
)

#: Per-image trait jitter of the demo's SynthFace. The generator's default (0.6) is calibrated
#: for converged training. In the demo's 5 epochs on 2 cores the AdaFace-only baseline without
#: occluders reached 76.7 % on clean pairs at 0.3 and 82.9 % at 0 (nuisance only) with the
#: demo's AdamW schedule; at 0.6 it was only run with SGD (55.4 %). Chosen on the baseline
#: alone, before any OAML run.
DEMO_TRAIT_JITTER = 0.3

#: model key -> (config, table rows as (label, score type)).
MODELS = dict(
    adaface_noocc=('configs/adaface_synthface_noocc.py',
                   [('AdaFace-only, no occluders', 'adaface')]),
    adaface=('configs/adaface_synthface.py',
             [('AdaFace-only + occluders (fair baseline)', 'adaface')]),
    oaml=('configs/oaml_synthface.py', [
        ('OAML: AdaFace branch', 'adaface'),
        ('OAML: QAConv, predicted visibility', 'qaconv'),
        ('OAML: QAConv, GT visibility (oracle)', 'qaconv_gt'),
        ('OAML: combined (AdaFace + QAConv)', 'combined'),
    ]),
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=0,
                        help='SynthFace generator seed; also seeds training (default 0)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny data and one short epoch: checks the plumbing, not accuracy')
    parser.add_argument('--with-noocc', action='store_true',
                        help='also train AdaFace-only without synthetic occluders')
    parser.add_argument('--work-dir', default=None,
                        help='output folder (default work_dirs/demo, work_dirs/demo_seed<S> '
                        'for other seeds, work_dirs/demo_quick with --quick)')
    parser.add_argument('--data-root', default=None,
                        help='SynthFace folder (default data/synthface, data/synthface_seed<S> '
                        'for other seeds, <work-dir>/synthface with --quick)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='training epochs (default: the configs\' schedule; 1 with --quick)')
    parser.add_argument('--workers', type=int, default=2,
                        help='processes rendering SynthFace (default 2)')
    args = parser.parse_args(argv)
    suffix = '_quick' if args.quick else ('' if args.seed == 0 else f'_seed{args.seed}')
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', 'demo' + suffix)
    if args.data_root is None:
        args.data_root = (osp.join(args.work_dir, 'synthface') if args.quick else
                          osp.join('data', 'synthface' + suffix))
    if args.epochs is None and args.quick:
        args.epochs = 1
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be positive, got {args.epochs}')
    return args


#: Log lines shown in the child's log file only (import warnings, per-parameter listings).
_CONSOLE_NOISE = ('Warning', 'warnings.warn', 'paramwise_options')


def stage(message: str) -> None:
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


def ensure_protocols(data_root: str, seed: int) -> None:
    """Write the probe-occluded variants of the clean pairs (held-out occluder styles)."""
    from mmoaml.datagen import make_occluded_variants
    val_dir = osp.join(data_root, 'val')
    missing = [protocol for protocol, _ in PROTOCOLS
               if not osp.isfile(osp.join(val_dir, f'{BIN_STEM}_{protocol}_masks.npz'))]
    if not missing:
        print(f'occluded protocols found in {val_dir}')
        return
    files = make_occluded_variants(
        osp.join(val_dir, f'{BIN_STEM}.bin'), val_dir, protocols=missing, seed=seed)
    for protocol, variant in files.items():
        print(f'{protocol:18s} -> {variant.bin}')


# ---------------------------------------------------------------------------------- train/test


def data_options(data_root: str, num_classes: int) -> List[str]:
    """``--cfg-options`` that point a SynthFace config at ``data_root``."""
    options = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'model.adaface_head.num_classes={num_classes}',
        f'val_dataloader.0.dataset.data_root={data_root}/val',
    ]
    options += [f'test_dataloader.{i}.dataset.data_root={data_root}/val'
                for i in range(len(PROTOCOLS))]
    return options


def run(command: List[str], log_path: str) -> None:
    """Run a child process, streaming its output to the console and to ``log_path``."""
    print('$ ' + ' '.join(command), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if any(noise in line for noise in _CONSOLE_NOISE):
                continue  # kept in the log file

            sys.stdout.write(line)
            sys.stdout.flush()
        code = proc.wait()
    if code:
        raise SystemExit(f'command failed with exit code {code} (log: {log_path}): '
                         + ' '.join(command))


def train_and_test(key: str, args: argparse.Namespace, num_classes: int) -> dict:
    """Train one model (unless its checkpoint exists) and test it with a feature dump."""
    from mmoaml.evaluation.metrics.dump_face_features import DUMP_METRICS_FILE
    config = MODELS[key][0]
    work_dir = osp.abspath(osp.join(args.work_dir, key))
    data_root = osp.abspath(args.data_root)
    options = data_options(data_root, num_classes) + [f'randomness.seed={args.seed}']
    if args.quick:
        options += ['default_hooks.logger.interval=1']
    if args.epochs is not None:
        options += [f'train_cfg.max_epochs={args.epochs}']
    os.makedirs(work_dir, exist_ok=True)
    times = {}
    last = osp.join(work_dir, 'last_checkpoint')
    start = time.perf_counter()
    if not osp.isfile(last):
        stage(f'training {key} ({config})')
        run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir, '--amp',
             '--no-validate', '--cfg-options', *options], osp.join(work_dir, 'train.out'))
    else:
        print(f'{key}: trained checkpoint found ({last})')
    times['train_s'] = time.perf_counter() - start
    with open(last) as f:
        checkpoint = f.read().strip()
    dump_dir = osp.join(work_dir, 'features')
    start = time.perf_counter()
    if not osp.isfile(osp.join(dump_dir, DUMP_METRICS_FILE)):
        stage(f'testing {key} on {", ".join(COLUMNS)}')
        run([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir', work_dir,
             '--dump', dump_dir, '--cfg-options', *options], osp.join(work_dir, 'test.out'))
    times['test_s'] = time.perf_counter() - start
    with open(osp.join(dump_dir, DUMP_METRICS_FILE)) as f:
        metrics = json.load(f)['metrics']
    return dict(metrics=metrics, features=dump_dir, checkpoint=checkpoint, **times)


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
    """The occlusion head on the 7x7 grid, from OAML's dumped per-image features."""
    from mmoaml.evaluation.functional.occlusion_quality import (mean_visibility, visibility_iou,
                                                                visibility_mse)
    from mmoaml.evaluation.metrics.dump_face_features import load_face_features
    per_protocol, occluded_pred, occluded_gt = {}, [], []
    clean_pred = None
    for _, column in PROTOCOLS:
        dump = load_face_features(osp.join(features, f'{column}.npz'))
        pred = np.stack([e['visibility'].float().numpy() for e in dump.entries])
        gt = np.stack([e['gt_visibility'].float().numpy() for e in dump.entries])
        if column == 'clean':
            clean_pred = pred
            per_protocol[column] = dict(
                mean_pred=mean_visibility(pred), mean_gt=mean_visibility(gt),
                mse=visibility_mse(pred, gt), iou_hidden=visibility_iou(pred, gt))
            continue
        # Probe-only protocols: the occluded face of pair k is image 2k + 1.
        pred, gt = pred[1::2], gt[1::2]
        occluded_pred.append(pred)
        occluded_gt.append(gt)
        per_protocol[column] = dict(
            mean_pred=mean_visibility(pred), mean_gt=mean_visibility(gt),
            mse=visibility_mse(pred, gt), iou_hidden=visibility_iou(pred, gt))
    pred, gt = np.concatenate(occluded_pred), np.concatenate(occluded_gt)
    return dict(
        grid='7x7',
        mean_pred_occluded=mean_visibility(pred),
        mean_pred_clean=mean_visibility(clean_pred),
        mean_gt_occluded=mean_visibility(gt),
        mse_occluded=visibility_mse(pred, gt),
        iou_hidden_occluded=visibility_iou(pred, gt),
        per_protocol=per_protocol)


def save_figure(data_root: str, features: str, path: str, per_set: int = 4) -> None:
    """Faces of every protocol with predicted (left) and ground-truth (right) visibility."""
    from mmoaml.evaluation.metrics.dump_face_features import load_face_features
    from mmoaml.fileio.image import decode_image
    from mmoaml.fileio.verification_bin import (load_verification_bin, load_visibility_masks,
                                                masks_path_for)
    from mmoaml.visualization import draw_visibility_grid
    images, predicted, gts = [], [], []
    for protocol, column in PROTOCOLS:
        bin_path = osp.join(data_root, 'val', f'{BIN_STEM}_{protocol}.bin')
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


def format_table(rows: List[dict], quality: Optional[dict]) -> str:
    width = max(len(r['label']) for r in rows) + 2
    lines = ['10-fold verification accuracy (%), probe-only occlusion, held-out occluder styles',
             f'{"":{width}s}' + ''.join(f'{c:>12s}' for c in COLUMNS)]
    lines.append('-' * len(lines[-1]))
    for row in rows:
        lines.append(f'{row["label"]:{width}s}' +
                     ''.join(f'{row["accuracy"][c]:12.2f}' for c in COLUMNS))
    if quality is not None:
        q = quality
        lines += [
            '',
            f'occlusion head ({q["grid"]}): mean predicted visibility {q["mean_pred_occluded"]:.3f}'
            f' on occluded probes (GT {q["mean_gt_occluded"]:.3f}) vs '
            f'{q["mean_pred_clean"]:.3f} on clean faces; MSE {q["mse_occluded"]:.4f}, '
            f'IoU of hidden cells {q["iou_hidden_occluded"]:.3f} (occluded probes)',
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
    sizes = SIZES['quick' if args.quick else 'default']
    timings = {}
    job_start = time.perf_counter()

    stage(f'SynthFace (seed {args.seed}) in {args.data_root}')
    start = time.perf_counter()
    meta = ensure_synthface(args.data_root, sizes, args.seed, args.workers)
    ensure_protocols(args.data_root, args.seed)
    timings['data_s'] = time.perf_counter() - start

    keys = (['adaface_noocc'] if args.with_noocc else []) + ['adaface', 'oaml']
    results = {}
    for key in keys:
        results[key] = train_and_test(key, args, meta['num_train_ids'])
        timings[f'{key}_train_s'] = results[key]['train_s']
        timings[f'{key}_test_s'] = results[key]['test_s']

    stage('results')
    rows = accuracy_rows(results)
    quality = occlusion_quality(results['oaml']['features'])
    figure = osp.join(args.work_dir, 'visibility.png')
    save_figure(args.data_root, results['oaml']['features'], figure)
    timings['total_s'] = time.perf_counter() - job_start
    table = format_table(rows, quality)
    summary = dict(
        command=' '.join(['python tools/demo_synthface.py'] +
                         list(sys.argv[1:] if argv is None else argv)),
        seed=args.seed,
        quick=args.quick,
        synthface=dict(meta, data_root=args.data_root),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     cpu_count=os.cpu_count()),
        columns=list(COLUMNS),
        rows=rows,
        occlusion_head=quality,
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
