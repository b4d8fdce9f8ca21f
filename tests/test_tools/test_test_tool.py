"""tools/test.py end to end: a tiny .bin and its occluded variants (the occluded-benchmark
generator), a checkpoint of a freshly built OAML, the results table, --dump with offline scoring
by eval_features.py, --show-dir, --trust-checkpoint and a 2-process CPU run of dist_test.sh;
MMPretrain's --out/--out-item/--amp/--show, ROC figures, the stored verification threshold and
slurm_test.sh."""
import argparse
import contextlib
import io
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from tool_module import load_tool

from mmoaml.datagen import load_grid_masks, make_occluded_variants
from mmoaml.evaluation import load_face_features
from mmoaml.evaluation.functional import tar_at_far
from mmoaml.evaluation.metrics.face_verification import FaceVerificationMetric
from mmoaml.fileio import (CheckpointMismatchError, NotACheckpointError, UnsafeCheckpointError,
                           decode_image, dump_verification_bin, encode_image, load_verification_bin,
                           load_visibility_masks)
from mmoaml.registry import MODELS

REPO = Path(__file__).parents[2]
PROTOCOLS = ('clean', 'mask_probe', 'random_probe')
SETS = tuple(f'tiny_{p}' for p in PROTOCOLS)
ISSAME = (True, False, True, False)
SIZE, GRID = 16, (2, 2)  # 16x16 faces; QAConv and the occlusion head on the 2x2 stage-3 map
SCORES = ('adaface', 'qaconv', 'qaconv_gt', 'combined')
MODEL = dict(
    type='OAML',
    backbone=dict(type='IResNet', depth=18, input_size=SIZE, out_indices=(2, 3)),
    neck=dict(type='FaceEmbeddingNeck', in_channels=512, feat_size=1, embed_dim=32),
    adaface_head=dict(type='AdaFaceHead', embed_dim=32, num_classes=4),
    qaconv_head=dict(type='QAConvHead', num_features=256, height=GRID[0], width=GRID[1]),
    occlusion_head=dict(type='OcclusionHead', in_channels=256, mid_channels=16),
    feature_level=0)
_run_ids = itertools.count()


test_tool = load_tool('test.py', 'mmoaml_test_tool')
eval_features = load_tool('analysis_tools/eval_features.py', 'mmoaml_eval_features')


def _config(data_root, sets, batch_size=2):
    loaders = ',\n'.join(
        f"dict(batch_size={batch_size}, num_workers=0, "
        f"sampler=dict(type='DefaultSampler', shuffle=False), "
        f"dataset=dict(type='VerificationBinDataset', data_root={str(data_root)!r}, "
        f"ann_file='{name}.bin', pipeline=[dict(type='PackFaceInputs')]))" for name in sets)
    return (f"default_scope = 'mmoaml'\n"
            f"custom_imports = dict(imports=['mmoaml'], allow_failed_imports=False)\n"
            f"model = {MODEL!r}\n"
            f"env_cfg = dict(dist_cfg=dict(backend='gloo'))\n"
            f"default_hooks = dict(logger=dict(type='LoggerHook', interval=10))\n"
            f"test_cfg = dict(type='MultiTestLoop')\n"
            f"test_dataloader = [{loaders}]\n"
            f"test_evaluator = dict(type='FaceVerificationMetric', nfolds=2, far=(0.5, ), "
            f"score_types={SCORES!r})\n")


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """The models here are tiny: with the cores shared, a second intra-op thread only waits
    (measured: 4 s to 18 s for the same run under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The .bin variants, a checkpoint of a fresh model, a 3-set and a 1-set config."""
    root = tmp_path_factory.mktemp('test_tool')
    rng = np.random.default_rng(0)
    images = []
    for same in ISSAME:
        first = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        second = first if same else rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        noise = rng.integers(-20, 21, second.shape)
        images += [first, np.clip(second + noise, 0, 255).astype(np.uint8)]
    dump_verification_bin(str(root / 'tiny.bin'), [encode_image(i, '.png') for i in images],
                          ISSAME)
    make_occluded_variants(str(root / 'tiny.bin'), str(root), protocols=PROTOCOLS, ext='.png',
                           grid_sizes=(GRID, ))
    torch.manual_seed(0)
    model = MODELS.build(dict(MODEL, _scope_='mmoaml'))
    with torch.no_grad():  # non-default eval statistics, so that the dumped head is checked
        model.qaconv_head.bn.running_mean.fill_(0.2)
        model.qaconv_head.logit_bn.running_var.fill_(3.0)
    state = model.state_dict()
    torch.save(dict(state_dict=state, meta={}), root / 'ckpt.pth')
    # Needs more than weights and MMEngine's state: refused unless trusted.
    torch.save(dict(state_dict=state, meta=dict(args=argparse.Namespace(lr=0.1))),
               root / 'full.pth')
    (root / 'cfg.py').write_text(_config(root, SETS))
    (root / 'one_set.py').write_text(_config(root, SETS[:1]))
    return dict(root=root, state=state)


def _argv(files, config, *extra, checkpoint='ckpt.pth'):
    run = next(_run_ids)
    return [str(files['root'] / config), str(files['root'] / checkpoint), '--work-dir',
            str(files['root'] / f'work{run}'), '--cfg-options',
            f'experiment_name=test_tool_{run}', *extra]


@pytest.fixture(scope='module')
def online(files):
    """One single-process run with --dump and --show-dir: its metrics and printed output."""
    root = files['root']
    argv = _argv(files, 'cfg.py', '--dump', str(root / 'dump'), '--show-dir', str(root / 'show'),
                 '--show-num', '6')
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        metrics = test_tool.main(argv)
    return dict(metrics=metrics, stdout=stdout.getvalue())


def _table(stdout):
    return [line for line in stdout.splitlines() if line.startswith('|')]


def _cells(line):
    return [c.strip() for c in line.strip('|').split('|')]


def test_prints_one_row_per_set_and_the_mean(online):
    metrics, table = online['metrics'], _table(online['stdout'])
    header = _cells(table[0])
    assert header[:2] == ['set', 'pairs']
    assert header[2:] == [t for s in SCORES for t in (f'{s} acc', f'{s} TAR@FAR=0.5')]
    rows = {_cells(line)[0]: _cells(line) for line in table[2:]}
    assert list(rows) == [*SETS, 'mean']
    for name in SETS:
        assert rows[name][1] == str(len(ISSAME))
        for i, score in enumerate(SCORES):
            acc = metrics[f'{name}/{score}/accuracy']
            tar = metrics[f'{name}/{score}/tar@far=0.5']
            assert rows[name][2 + 2 * i:4 + 2 * i] == [f'{100 * acc:.2f}', f'{100 * tar:.2f}']
    for i, score in enumerate(SCORES):
        mean = metrics[f'mean/{score}/accuracy']
        assert mean == pytest.approx(np.mean([metrics[f'{n}/{score}/accuracy'] for n in SETS]))
        assert rows['mean'][2 + 2 * i] == f'{100 * mean:.2f}'


def test_dump_holds_the_sets_features_head_and_metric_config(files, online):
    root = files['root']
    assert json.loads((root / 'dump' / 'metrics.json').read_text()) == dict(
        sets=list(SETS), metrics=online['metrics'])
    for name in SETS:
        dump = load_face_features(root / 'dump' / f'{name}.npz')
        assert dump.set_name == name
        assert dump.metric_cfg == dict(nfolds=2, far=[0.5], score_types=list(SCORES))
        _, issame = load_verification_bin(str(root / f'{name}.bin'))
        assert [e['sample_idx'] for e in dump.entries] == list(range(2 * len(ISSAME)))
        assert [e['issame'] for e in dump.entries[::2]] == issame.tolist()
        entry = dump.entries[0]
        assert entry['embedding'].shape == (32, ) and entry['embedding'].dtype == torch.float32
        assert entry['feature_map'].shape == (256, *GRID)
        assert entry['feature_map'].dtype == torch.float16
        assert entry['visibility'].shape == (1, *GRID)
        # Ground truth on the map grid: the generator's own area-averaged masks.
        grid = load_grid_masks(root / f'{name}_masks_{GRID[0]}x{GRID[1]}.npz')
        dumped = torch.stack([e['gt_visibility'] for e in dump.entries]).numpy()
        np.testing.assert_allclose(dumped, grid, atol=1e-6)
        for key, value in dump.matcher_state.items():
            assert torch.equal(value, files['state'][f'qaconv_head.{key}']), key
        assert dump.matcher_cfg == dict(type='QAConvHead', num_features=256, height=GRID[0],
                                        width=GRID[1], weighting='mask')


def test_offline_scoring_of_the_dump_gives_the_same_numbers(files, online, capsys):
    offline = eval_features.main([str(files['root'] / 'dump')])
    printed = capsys.readouterr().out
    per_set = {k: v for k, v in online['metrics'].items() if not k.startswith('mean/')}
    assert offline == per_set  # exactly, every key
    assert _table(printed) == _table(online['stdout'])


def test_show_dir_draws_predicted_and_ground_truth_visibility(files, online):
    alpha, visible, hidden = 0.45, np.array([0, 200, 0]), np.array([0, 0, 255])
    for name in SETS:
        grid = cv2.imread(str(files['root'] / 'show' / f'{name}.png'))
        # 6 faces in one row (up to 8 columns), each tile prediction | ground truth, 2 px pad.
        tile_w = 2 * SIZE
        assert grid.shape == (SIZE + 4, 6 * (tile_w + 2) + 2, 3)
        faces, _ = load_verification_bin(str(files['root'] / f'{name}.bin'))
        gt = load_visibility_masks(str(files['root'] / f'{name}_masks.npz'))
        dump = load_face_features(files['root'] / 'dump' / f'{name}.npz')
        for i in range(6):
            face = decode_image(faces[i], name).astype(np.float64)
            cell = SIZE // GRID[0]
            pred = dump.entries[i]['visibility'][0].numpy().repeat(cell, 0).repeat(cell, 1)
            left = 2 + i * (tile_w + 2)
            for vis, x in ((pred, left), (gt[i] / 255.0, left + SIZE)):
                tint = vis[..., None] * visible + (1 - vis[..., None]) * hidden
                expected = np.rint((1 - alpha) * face + alpha * tint)
                drawn = grid[2:2 + SIZE, x:x + SIZE].astype(np.float64)
                np.testing.assert_allclose(drawn, expected, atol=1)


def test_checkpoint_needing_full_unpickling_requires_trust(files, capsys):
    with pytest.raises(UnsafeCheckpointError, match='full.pth'):
        test_tool.main(_argv(files, 'one_set.py', checkpoint='full.pth'))
    metrics = test_tool.main(
        _argv(files, 'one_set.py', '--trust-checkpoint', checkpoint='full.pth'))
    assert set(metrics) >= {f'{SETS[0]}/{s}/accuracy' for s in SCORES}
    assert _cells(_table(capsys.readouterr().out)[2])[0] == SETS[0]


# mmoaml key prefix -> AdaFace's (the reverse of mmoaml.fileio.convert_adaface_state_dict)
_TO_ADAFACE = (('backbone.', 'model.'), ('neck.feat_bn.', 'model.output_layer.0.'),
               ('neck.fc.', 'model.output_layer.3.'), ('neck.embed_bn.', 'model.output_layer.4.'),
               ('adaface_head.', 'head.'))


def _adaface_like(state):
    renamed = {}
    for key, value in state.items():
        for new, old in _TO_ADAFACE:
            if key.startswith(new):
                renamed[old + key[len(new):]] = value
                break
    return renamed


def _save(files, name, state):
    torch.save(dict(state_dict=state, meta={}), files['root'] / name)
    return name


def _refused(files, checkpoint, error, capsys, *extra):
    """Run tools/test.py on the one-set config: the error it raises; no table was printed."""
    with pytest.raises(error) as info:
        test_tool.main(_argv(files, 'one_set.py', *extra, checkpoint=checkpoint))
    assert checkpoint in str(info.value)
    assert not _table(capsys.readouterr().out)
    return str(info.value)


def test_an_empty_state_dict_gives_no_results(files, capsys):
    message = _refused(files, _save(files, 'empty.pth', {}), NotACheckpointError, capsys)
    assert 'empty "state_dict"' in message


def test_unconverted_adaface_keys_are_listed_with_the_converter_to_use(files, capsys):
    state = _adaface_like(files['state'])
    message = _refused(files, _save(files, 'adaface.pth', state), CheckpointMismatchError, capsys)
    missing = [k for k in files['state'] if not k.endswith('num_batches_tracked')]
    assert f'{len(missing)} missing keys' in message and f'{len(state)} unexpected keys' in message
    assert 'backbone.input_layer.0.weight' in message and 'model.input_layer.0.weight' in message
    assert f'... ({len(state) - 10} more)' in message  # the first 10 of each, then a count
    assert 'tools/model_converters/adaface_to_mmoaml.py' in message
    assert '--non-strict' in message


def test_nan_weights_are_named(files, capsys):
    state = dict(files['state'])
    state['occlusion_head.out_conv.weight'] = torch.full_like(
        state['occlusion_head.out_conv.weight'], float('nan'))
    message = _refused(files, _save(files, 'nan.pth', state), ValueError, capsys)
    assert 'non-finite weights (NaN/inf) in 1 tensors: occlusion_head.out_conv.weight' in message


def test_non_strict_loads_a_partial_checkpoint_with_a_warning(files, capsys):
    state = {k: v for k, v in files['state'].items() if not k.startswith('occlusion_head.')}
    state['old_head.weight'] = torch.zeros(1)
    checkpoint = _save(files, 'partial.pth', state)
    message = _refused(files, checkpoint, CheckpointMismatchError, capsys)
    assert 'occlusion_head.' in message and '1 unexpected keys (in the checkpoint, not in the ' \
        'model): old_head.weight' in message
    with mock.patch('mmoaml.fileio.model_state.print_log') as log:
        metrics = test_tool.main(_argv(files, 'one_set.py', '--non-strict', checkpoint=checkpoint))
    warning = log.call_args.args[0]
    assert 'partial.pth' in warning and 'old_head.weight' in warning
    assert 'missing keys' in warning and 'occlusion_head.' in warning
    assert set(metrics) >= {f'{SETS[0]}/{s}/accuracy' for s in SCORES}
    assert _cells(_table(capsys.readouterr().out)[2])[0] == SETS[0]


def test_persistent_loaders_without_workers_run(files, capsys):
    # torch's DataLoader refuses persistent_workers=True with num_workers=0
    argv = _argv(files, 'one_set.py', 'test_dataloader.0.persistent_workers=True')
    metrics = test_tool.main(argv)
    assert set(metrics) >= {f'{SETS[0]}/{s}/accuracy' for s in SCORES}


def test_dataloader_flags_reach_every_loader(files):
    argv = _argv(files, 'cfg.py', '--no-pin-memory', '--no-persistent-workers')
    args = test_tool.parse_args(argv)
    cfg = test_tool.merge_args(Config.fromfile(args.config), args)
    assert len(cfg.test_dataloader) == len(SETS)
    for loader in cfg.test_dataloader:
        assert loader.pin_memory is False and loader.persistent_workers is False


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_cpu_processes_give_the_single_process_numbers(files, online):
    root = files['root']
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    env.pop('CUDA_VISIBLE_DEVICES', None)
    argv = _argv(files, 'cfg.py', '--dump', str(root / 'dist_dump'))
    result = subprocess.run(
        ['bash', str(REPO / 'tools' / 'dist_test.sh'), argv[0], argv[1], '2', *argv[2:]],
        env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = json.loads((root / 'dist_dump' / 'metrics.json').read_text())['metrics']
    assert _table(result.stdout) == _table(online['stdout'])
    # Each rank predicts other batches with another thread count: CPU convolutions may round
    # differently (seen: thresholds off in the 9th digit), so floats match to rounding only.
    assert list(distributed) == list(online['metrics'])
    for key, value in online['metrics'].items():
        assert distributed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def _dump_cfg(test_dataloader, test_evaluator, qaconv=True):
    model = dict(type='OAML', qaconv_head=dict(type='QAConvHead') if qaconv else None)
    cfg = Config(dict(model=model, test_dataloader=test_dataloader,
                      test_evaluator=test_evaluator))
    test_tool.add_feature_dump(cfg, 'out')
    return cfg.test_evaluator


def test_dump_is_appended_to_each_verification_set_in_every_evaluator_layout():
    verification = dict(type='FaceVerificationMetric', nfolds=5)
    identification = dict(type='FaceIdentificationMetric')
    dump = dict(type='DumpFaceFeatures', out_dir='out',
                score_types=['adaface', 'qaconv', 'qaconv_gt', 'qaconv_none', 'combined'],
                metric_cfg=dict(nfolds=5))
    # One config for all sets: copied per set, then extended.
    assert _dump_cfg([{}, {}], verification) == [[verification, dump]] * 2
    # One entry per set (a metric, a list, an Evaluator config); sets without a verification
    # metric are left as they are.
    evaluators = [verification, [identification],
                  dict(type='Evaluator', metrics=[verification, identification])]
    assert _dump_cfg([{}, {}, {}], evaluators) == [
        [verification, dump], [identification],
        dict(type='Evaluator', metrics=[verification, identification, dump])]
    # A single loader; a model without QAConv dumps the embeddings only.
    assert _dump_cfg({}, verification, qaconv=False) == [
        verification, dict(dump, score_types=['adaface'])]
    with pytest.raises(ValueError, match='no test set is evaluated with a FaceVerification'):
        _dump_cfg([{}], [identification])


# ------------------------------------------- MMPretrain's flags, ROC figures, the threshold


def _work_dir(argv):
    return Path(argv[argv.index('--work-dir') + 1])


def _offline_scores(files, name):
    """The set's per-pair scores, recomputed from the online run's dump."""
    dump = load_face_features(files['root'] / 'dump' / f'{name}.npz')
    metric = FaceVerificationMetric(**dump.metric_cfg)
    metric.bind_matcher(dump.build_matcher())
    metric.compute_metrics(dump.entries)
    return metric.last_pair_scores, metric.last_issame


def test_out_json_holds_the_metrics(files):
    out = files['root'] / 'out' / 'metrics.json'
    metrics = test_tool.main(_argv(files, 'one_set.py', '--out', str(out)))
    assert json.loads(out.read_text()) == metrics


def test_out_npz_metrics_loads_without_pickle(files):
    out = files['root'] / 'metrics.npz'
    metrics = test_tool.main(_argv(files, 'one_set.py', '--out', str(out), '--out-item',
                                   'metrics'))
    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(metrics)
        for key, value in metrics.items():
            assert data[key].shape == () and float(data[key]) == value, key


def test_out_npz_pred_holds_each_images_predictions_and_the_pair_scores(files, online):
    out = files['root'] / 'pred.npz'
    test_tool.main(_argv(files, 'one_set.py', '--out', str(out)))  # .npz: pred by default
    assert not (files['root'] / 'pred.npz.parts').exists()
    name = SETS[0]
    dump = load_face_features(files['root'] / 'dump' / f'{name}.npz')
    scores, issame = _offline_scores(files, name)
    with np.load(out, allow_pickle=False) as data:
        fields = ('sample_idx', 'issame', 'pair_idx', 'embedding', 'feature_map',
                  'visibility', 'gt_visibility')
        assert sorted(data.files) == sorted([f'{name}/{f}' for f in fields] +
                                            [f'{name}/scores/{s}' for s in SCORES])
        np.testing.assert_array_equal(data[f'{name}/sample_idx'], np.arange(2 * len(ISSAME)))
        np.testing.assert_array_equal(data[f'{name}/issame'], issame)
        np.testing.assert_array_equal(data[f'{name}/pair_idx'],
                                      [e['pair_idx'] for e in dump.entries])
        assert data[f'{name}/feature_map'].dtype == np.float16
        for field in ('embedding', 'feature_map', 'visibility', 'gt_visibility'):
            expected = torch.stack([e[field] for e in dump.entries]).numpy()
            np.testing.assert_array_equal(data[f'{name}/{field}'], expected, err_msg=field)
        for score in SCORES:
            np.testing.assert_array_equal(data[f'{name}/scores/{score}'], scores[score])


@pytest.mark.parametrize('extra, message', [
    (['--out-item', 'metrics'], '--out-item needs --out'),
    (['--out', 'results.pkl'], 'must end with .json or .npz'),
    (['--out', 'results.json', '--out-item', 'pred'], 'give an .npz file'),
    (['--threshold-far', '0'], 'must lie in'),
])
def test_out_and_threshold_flags_are_checked(files, capsys, extra, message):
    with pytest.raises(SystemExit):
        test_tool.parse_args(_argv(files, 'one_set.py', *extra))
    assert message in capsys.readouterr().err


def test_amp_runs_the_model_under_autocast(files):
    args = test_tool.parse_args(_argv(files, 'one_set.py', '--amp'))
    cfg = test_tool.merge_args(Config.fromfile(args.config), args)
    assert cfg.test_cfg == dict(type='MultiTestLoop', fp16=True)
    from mmoaml.engine.runners import multi_loops
    with mock.patch.object(multi_loops, 'autocast', wraps=multi_loops.autocast) as spy:
        metrics = test_tool.main(_argv(files, 'one_set.py', '--amp'))
    assert spy.call_count == len(ISSAME)  # 8 images in batches of 2
    assert all(c.kwargs == dict(enabled=True) for c in spy.call_args_list)
    assert all(np.isfinite(metrics[f'{SETS[0]}/{s}/accuracy']) for s in SCORES)


def test_cfg_options_are_applied_after_the_flags(files):
    # As MMPretrain's merge_args: --cfg-options last, so it wins over a flag on the same key.
    argv = _argv(files, 'cfg.py', 'test_cfg.fp16=False', 'test_dataloader.0.pin_memory=True',
                 '--amp', '--no-pin-memory')
    args = test_tool.parse_args(argv)
    cfg = test_tool.merge_args(Config.fromfile(args.config), args)
    assert cfg.test_cfg.fp16 is False
    assert [loader.pin_memory for loader in cfg.test_dataloader] == [True, False, False]


def test_show_dir_writes_one_roc_png_per_verification_set(files, online):
    for name in SETS:
        path = files['root'] / 'show' / f'roc_{name}.png'
        assert path.stat().st_size > 0
        assert cv2.imread(str(path)).shape == (480, 640, 3)


def test_show_writes_the_figures_into_the_work_dir(files, caplog):
    argv = _argv(files, 'one_set.py', '--show', '--show-num', '2')
    test_tool.main(argv)
    shown = list(_work_dir(argv).glob('*/show/*.png'))
    assert sorted(p.name for p in shown) == sorted([f'{SETS[0]}.png', f'roc_{SETS[0]}.png'])
    roc = next(p for p in shown if p.name.startswith('roc_'))
    assert cv2.imread(str(roc)).shape == (480, 640, 3)


def test_threshold_json_at_the_far_of_the_named_set_then_published(files, online):
    argv = _argv(files, 'cfg.py', '--threshold-far', '0.5', '--threshold-set', SETS[1])
    test_tool.main(argv)
    stored = json.loads((_work_dir(argv) / 'verification_threshold.json').read_text())
    assert stored['verification_far'] == 0.5 and stored['verification_set'] == SETS[1]
    for name in SETS:
        scores, issame = _offline_scores(files, name)
        expected = {s: tar_at_far(scores[s], issame, (0.5, ))[0] for s in SCORES}
        assert stored['per_set'][name] == {s: p.threshold for s, p in expected.items()}
        if name == SETS[1]:
            assert stored['verification_threshold'] == stored['per_set'][name]
            assert stored['tar'] == {s: p.tar for s, p in expected.items()}
            assert all(stored['achieved_far'][s] <= 0.5 for s in SCORES)

    publish = load_tool('model_converters/publish_model.py', 'mmoaml_publish_model')
    final = publish.publish(str(files['root'] / 'ckpt.pth'), str(files['root'] / 'pub.pth'),
                            threshold_json=str(_work_dir(argv) / 'verification_threshold.json'))
    meta = torch.load(final, map_location='cpu', weights_only=True)['meta']
    assert meta['verification_threshold'] == stored['verification_threshold']
    assert meta['verification_far'] == 0.5
    # The combined score's z-scores, frozen: mean and population std of the set's scores.
    scores, _ = _offline_scores(files, SETS[1])
    for score in ('adaface', 'qaconv'):
        assert meta['verification_score_stats'][score] == pytest.approx(
            dict(mean=np.mean(scores[score]), std=np.std(scores[score])))


def test_threshold_set_defaults_to_the_first_verification_set():
    issame = np.array([True, False, True, False])
    first = mock.Mock(last_pair_scores=dict(adaface=np.array([0.9, 0.1, 0.8, 0.3])),
                      last_issame=issame)
    second = mock.Mock(last_pair_scores=dict(adaface=np.array([0.9, 0.5, 0.8, 0.2])),
                       last_issame=issame)
    stored = test_tool.verification_thresholds(dict(a=first, b=second), 0.5)
    assert stored['verification_set'] == 'a'
    assert stored['verification_threshold'] == dict(adaface=0.1)
    assert stored['per_set'] == dict(a=dict(adaface=0.1), b=dict(adaface=0.2))
    with pytest.raises(ValueError, match="'c' is not a verification test set"):
        test_tool.verification_thresholds(dict(a=first), 0.5, 'c')


def test_unknown_threshold_set_stops_before_testing(files):
    with mock.patch.object(test_tool.Runner, 'test') as run:
        with pytest.raises(ValueError, match="--threshold-set 'lfw' is not a test set"):
            test_tool.main(_argv(files, 'one_set.py', '--threshold-set', 'lfw'))
    run.assert_not_called()


def test_slurm_test_hands_srun_the_job_and_test_arguments(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(0o755)
    log = tmp_path / 'srun_args.txt'
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               SRUN_LOG=str(log), PYTHON='/opt/py/bin/python', GPUS='4', GPUS_PER_NODE='4')
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'slurm_test.sh'), 'part', 'job', 'cfg.py', 'a b.pth',
         '--out', 'r.json', '--amp'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    args = log.read_text().splitlines()
    assert args[:2] == ['-p', 'part']
    for expected in ('--job-name=job', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4'):
        assert expected in args
    assert args[args.index('/opt/py/bin/python'):] == [
        '/opt/py/bin/python', '-u', str(REPO / 'tools' / 'test.py'), 'cfg.py', 'a b.pth',
        '--launcher=slurm', '--out', 'r.json', '--amp']


def test_show_dir_without_predicted_visibility_draws_the_roc_only(files):
    root = files['root']
    no_occlusion = {k: v for k, v in MODEL.items() if k != 'occlusion_head'}
    (root / 'no_occlusion.py').write_text(
        _config(root, SETS[:1]).replace(repr(MODEL), repr(no_occlusion)))
    with mock.patch.object(test_tool, 'print_log', wraps=test_tool.print_log) as log:
        test_tool.main(_argv(files, 'no_occlusion.py', '--non-strict', '--show-dir',
                             str(root / 'show_no_occlusion')))
    assert [p.name for p in (root / 'show_no_occlusion').iterdir()] == [f'roc_{SETS[0]}.png']
    assert any('predicts no visibility' in c.args[0] for c in log.call_args_list)


def test_missing_test_data_stops_before_anything_is_built(files):
    argv = _argv(files, 'cfg.py', 'test_dataloader.0.dataset.ann_file=missing.bin')
    with mock.patch.object(test_tool.Runner, 'from_cfg') as build, \
            pytest.raises(SystemExit, match=r'missing\.bin'):
        test_tool.main(argv)
    build.assert_not_called()
