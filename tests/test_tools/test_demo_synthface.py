"""The SynthFace main job end to end at tiny sizes (plumbing only, no accuracy asserted)."""
import json
import math
import os.path as osp
import subprocess
import sys

import cv2
from tool_module import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_quick_demo_writes_a_complete_table_json_and_figure(tmp_path):
    work_dir = tmp_path / 'demo'
    proc = subprocess.run(
        [sys.executable, 'tools/demo_synthface.py', '--quick', '--with-noocc', '--work-dir',
         str(work_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    with open(work_dir / 'results.json') as f:
        results = json.load(f)
    assert results['columns'] == ['clean', 'mask', 'niqab', 'sunglasses']
    labels = [row['label'] for row in results['rows']]
    assert labels == [
        'AdaFace-only, no occluders', 'AdaFace-only + occluders (fair baseline)',
        'OAML: AdaFace branch', 'OAML: QAConv, no visibility weighting',
        'OAML: QAConv, predicted visibility',
        'OAML: QAConv, GT visibility (oracle)', 'OAML: combined (AdaFace + QAConv)'
    ]
    for row in results['rows']:
        assert set(row['accuracy']) == set(results['columns'])
        for value in row['accuracy'].values():
            assert isinstance(value, float) and 0 <= value <= 100
    # The combined score's weight was chosen on the held-out pairs, from the grid 0, 0.1, ..., 1.
    fusion = results['fusion']['oaml']
    assert 0 <= fusion['w_adaface'] <= 1 and len(fusion['holdout_mean_accuracy']) == 11
    assert results['fusion']['adaface'] is None
    for row in results['rows']:
        assert set(row['standard_error']) == set(results['columns'])
    quality = results['occlusion_head']
    for key in ('mean_pred_occluded', 'mean_pred_clean', 'mse_occluded', 'iou_hidden_occluded'):
        assert math.isfinite(quality[key]) and 0 <= quality[key] <= 1
    assert set(quality['per_protocol']) == set(results['columns'])
    # The printed table is the saved one, with one line per row.
    assert results['table'] in proc.stdout
    for label in labels:
        assert label in proc.stdout

    figure = cv2.imread(str(work_dir / 'visibility.png'))
    assert figure is not None and figure.shape[0] > 112 and figure.shape[1] > 4 * 112


def _demo_module():
    return load_tool('demo_synthface.py', 'demo_synthface')


def test_demo_reuses_synthface_only_when_generator_and_jitter_match(tmp_path):
    from mmoaml.datagen import SYNTHFACE_VERSION
    demo = _demo_module()
    sizes = demo.SIZES['quick']
    meta = dict(sizes, seed=3, trait_jitter=demo.DEMO_TRAIT_JITTER,
                generator_version=SYNTHFACE_VERSION, num_train_images=1)
    (tmp_path / 'meta.json').write_text(json.dumps(meta))
    # Same data set: reused as it is (nothing is written next to meta.json).
    assert demo.ensure_synthface(str(tmp_path), sizes, seed=3, workers=1) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ['meta.json']
    for key, other in (('trait_jitter', demo.DEMO_TRAIT_JITTER + 0.3),
                       ('generator_version', '0.9'), ('seed', 4)):
        (tmp_path / 'meta.json').write_text(json.dumps(dict(meta, **{key: other})))
        try:
            demo.ensure_synthface(str(tmp_path), sizes, seed=3, workers=1)
        except SystemExit as exc:
            assert 'another SynthFace' in str(exc) and key in str(exc)
        else:
            raise AssertionError(f'a SynthFace with another {key} was reused')


def test_epoch_option_moves_the_end_of_the_cosine_decay():
    from mmengine.config import Config, DictAction
    demo = _demo_module()
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'adaface_synthface.py'))
    cosine = cfg.param_scheduler[demo.COSINE_SCHEDULER_INDEX]
    assert cosine.type == 'CosineAnnealingLR'
    assert cosine.end == cosine.T_max == cfg.train_cfg.max_epochs
    action = DictAction(option_strings=['--cfg-options'], dest='cfg_options')
    options = {}
    for option in demo.epoch_options(3):
        key, value = option.split('=')
        options[key] = action._parse_iterable(value)
    cfg.merge_from_dict(options)
    cosine = cfg.param_scheduler[demo.COSINE_SCHEDULER_INDEX]
    assert cosine.end == cosine.T_max == cfg.train_cfg.max_epochs == 3


def test_standard_error_of_an_accuracy():
    demo = _demo_module()
    # sqrt(0.9 * 0.1 / 900) = 0.01 -> 1 point.
    assert math.isclose(demo.standard_error(90.0, 900), 1.0)
    assert math.isclose(demo.standard_error(50.0, 2500), 1.0)


def test_a_job_gets_one_thread_only_while_another_runs():
    demo = _demo_module()
    running = demo.RunningJobs()
    first, second = (type('Job', (), dict(key=key))() for key in ('adaface', 'oaml'))
    with running.entered(first):
        assert running.threads_for(first) is None  # alone: every core
        with running.entered(second):
            assert running.threads_for(first) == running.threads_for(second) == 1
        assert running.threads_for(first) is None
