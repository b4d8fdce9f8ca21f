"""Score features dumped by ``tools/test.py --dump`` offline, on one machine (CPU is enough).

    python tools/test.py CONFIG CKPT --dump work_dirs/features
    python tools/analysis_tools/eval_features.py work_dirs/features
    python tools/analysis_tools/eval_features.py work_dirs/features \\
        --score-types adaface qaconv qaconv_gt combined --combine-weights 0.3 0.7

Each ``<set>.npz`` of the folder is scored with the QAConv head rebuilt from the dumped weights
and the set's dumped ``FaceVerificationMetric`` arguments, through the same
``FaceVerificationMetric.compute_metrics`` as the online test, so without overrides the table is
the one ``tools/test.py`` printed. The sets are those of the folder's ``metrics.json`` (written
by ``tools/test.py``), in the online order; without that file, every ``<set>.npz`` of the
folder in alphabetical order. QAConv scores are bit-identical when the matcher runs on the
device of the online run (``--device``); another device's kernels may round differently. This
replaces the OAML report's separate single-GPU QAConv evaluation script.
"""
import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmoaml.evaluation import format_results_table, score_face_features
from mmoaml.evaluation.metrics.face_verification import SCORE_TYPES
from mmoaml.fileio import DUMP_METRICS_FILE, load_face_features
from mmoaml.utils import register_all_modules


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Score dumped face features offline')
    parser.add_argument('dump_dir', help='folder written by tools/test.py --dump')
    parser.add_argument(
        '--score-types',
        nargs='+',
        choices=SCORE_TYPES,
        help='score types to compute (default: those of each set\'s dumped metric config)')
    parser.add_argument(
        '--combine-weights',
        nargs=2,
        type=float,
        metavar=('W_ADAFACE', 'W_QACONV'),
        help='weights of the combined score (default: the dumped ones)')
    parser.add_argument(
        '--device',
        default='cpu',
        help='device of the QAConv matcher (default cpu); the device the online test ran on '
        'gives bit-identical QAConv scores')
    parser.add_argument('--out', help='also write the metrics to this JSON file')
    return parser.parse_args(argv)


def dump_files(dump_dir: str) -> List[str]:
    """The folder's ``<set>.npz`` files of the recorded online run (in its order), else all of
    them alphabetically."""
    files = {osp.splitext(osp.basename(p))[0]: p for p in glob.glob(osp.join(dump_dir, '*.npz'))}
    if not files:
        raise FileNotFoundError(f'{dump_dir}: no <set>.npz feature dumps (tools/test.py --dump)')
    online = osp.join(dump_dir, DUMP_METRICS_FILE)
    if not osp.isfile(online):
        return [files[name] for name in sorted(files)]
    with open(online) as f:
        # Sets without a verification metric have no dump; files of other runs are left out.
        order = [name for name in json.load(f).get('sets', []) if name in files]
    if not order:
        raise FileNotFoundError(f'{dump_dir}: none of the sets in {DUMP_METRICS_FILE} has a '
                                'dump file')
    return [files[name] for name in order]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    register_all_modules(init_default_scope=False)
    overrides = {}
    if args.score_types is not None:
        overrides['score_types'] = args.score_types
    if args.combine_weights is not None:
        overrides['combine_weights'] = args.combine_weights
    metrics: Dict[str, float] = {}
    for path in dump_files(args.dump_dir):
        metrics.update(
            score_face_features(load_face_features(path), device=args.device, **overrides))
    if args.out is not None:
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=1)
    print(format_results_table(metrics))
    return metrics


if __name__ == '__main__':
    main()
