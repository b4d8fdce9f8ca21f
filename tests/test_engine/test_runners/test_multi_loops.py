"""MultiValLoop / MultiTestLoop through a real MMEngine Runner on two tiny verification sets."""
import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

from mmoaml.evaluation import verification_accuracy, verification_accuracy_l2
from mmoaml.models import QAConvHead

C, H, W = 4, 2, 2
SCOPE = 'mmoaml'  # each Runner makes its scope current; keep mmoaml's for later tests
_run_ids = itertools.count()


class _ToyVerifier(BaseModel):
    """Embedding = the normalised input; feature map = a fixed projection of it."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, C * H * W)
        self.qaconv_head = QAConvHead(num_features=C, height=H, width=W)
        with torch.no_grad():
            self.proj.weight.copy_(torch.linspace(-1, 1, C * H * W * 4).view(C * H * W, 4))
            self.proj.bias.zero_()
            self.qaconv_head.fc.bias.fill_(0.1)

    def features(self, x):
        return F.normalize(x, dim=1), F.normalize(self.proj(x).view(-1, C, H, W), dim=1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return dict(loss=self.proj(torch.stack(inputs)).pow(2).mean())
        embedding, maps = self.features(torch.stack(inputs))
        for sample, e, m in zip(data_samples, embedding, maps):
            sample.set_field(e, 'embedding')
            sample.set_field(m, 'feature_map')
        return data_samples


class _PairSet(Dataset):
    """``num_pairs`` pairs laid out as images 2k, 2k+1; every other pair is genuine."""

    def __init__(self, name, num_pairs, seed):
        self.metainfo = dict(name=name)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2 * num_pairs, 4, generator=g)
        self.issame = [k % 2 == 0 for k in range(num_pairs)]
        for k, same in enumerate(self.issame):
            if same:
                x[2 * k + 1] = x[2 * k] + 0.5 * x[2 * k + 1]
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        meta = dict(sample_idx=i, pair_idx=i // 2, issame=self.issame[i // 2])
        return dict(inputs=self.x[i], data_samples=DataSample(metainfo=meta))


class _CountHooks(Hook):
    """Counts the stage hooks and keeps the metrics passed to after_*_epoch."""

    def __init__(self):
        self.calls = Counter()
        self.metrics = None

    def before_val(self, runner):
        self.calls['before_val'] += 1

    def before_val_epoch(self, runner):
        self.calls['before_val_epoch'] += 1

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.calls['before_val_iter'] += 1

    def after_val_epoch(self, runner, metrics=None):
        self.calls['after_val_epoch'] += 1
        self.metrics = metrics

    def after_val(self, runner):
        self.calls['after_val'] += 1

    def before_test(self, runner):
        self.calls['before_test'] += 1

    def before_test_epoch(self, runner):
        self.calls['before_test_epoch'] += 1

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self.calls['before_test_iter'] += 1

    def after_test_epoch(self, runner, metrics=None):
        self.calls['after_test_epoch'] += 1
        self.metrics = metrics

    def after_test(self, runner):
        self.calls['after_test'] += 1


SETS = (('a', 8, 0), ('b', 6, 1))
METRIC = dict(type='FaceVerificationMetric', nfolds=2, far=(0.5, ),
              score_types=('adaface', 'qaconv'))


def _loader(name, num_pairs, seed):
    return dict(dataset=_PairSet(name, num_pairs, seed),
                sampler=dict(type='DefaultSampler', shuffle=False), batch_size=3, num_workers=0)


def _runner(tmp_path, hooks=(), sets=SETS, evaluator=None, stage='val'):
    loaders = [_loader(*s) for s in sets]
    evaluator = [METRIC] * len(sets) if evaluator is None else evaluator
    kwargs = {f'{stage}_dataloader': loaders, f'{stage}_evaluator': evaluator,
              f'{stage}_cfg': dict(type='MultiValLoop' if stage == 'val' else 'MultiTestLoop')}
    return Runner(model=_ToyVerifier(), work_dir=str(tmp_path), custom_hooks=list(hooks),
                  default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
                  experiment_name=f'multi_{next(_run_ids)}', default_scope=SCOPE, **kwargs)


def _expected(model, name, num_pairs, seed):
    """Per-set accuracies from the functional protocol on directly computed scores."""
    data = _PairSet(name, num_pairs, seed)
    with torch.no_grad():
        emb, maps = model.features(data.x)
        head = model.qaconv_head.eval()
        maps = maps.half().float()  # the metric stores maps in float16
        qaconv = [float(head.match(maps[2 * k:2 * k + 1], maps[2 * k + 1:2 * k + 2])[0, 0])
                  for k in range(num_pairs)]
    emb = emb.numpy()
    return dict(adaface=verification_accuracy_l2(emb[0::2], emb[1::2], data.issame, 2)[0],
                qaconv=verification_accuracy(qaconv, data.issame, 2)[0])


def test_val_runs_every_set_once_with_set_keys_and_means(tmp_path):
    hooks = _CountHooks()
    runner = _runner(tmp_path, hooks=[hooks])
    metrics = runner.val()
    assert hooks.calls['before_val'] == hooks.calls['before_val_epoch'] == 1
    assert hooks.calls['after_val_epoch'] == hooks.calls['after_val'] == 1
    assert hooks.calls['before_val_iter'] == 6 + 4  # 16 and 12 images in batches of 3
    assert hooks.metrics == metrics
    model = runner.model
    expected = {name: _expected(model, *s) for s in SETS for name in [s[0]]}
    for name in ('a', 'b'):
        assert metrics[f'{name}/adaface/accuracy'] == expected[name]['adaface']
        assert metrics[f'{name}/qaconv/accuracy'] == pytest.approx(expected[name]['qaconv'])
        assert metrics[f'{name}/num_pairs'] == dict(a=8, b=6)[name]
    for score in ('adaface', 'qaconv'):
        assert metrics[f'mean/{score}/accuracy'] == pytest.approx(
            np.mean([expected[n][score] for n in ('a', 'b')]))
    assert all(key.split('/')[0] in ('a', 'b', 'mean') for key in metrics)


def test_test_loop_calls_only_test_hooks_and_builds_one_evaluator_per_set(tmp_path):
    hooks = _CountHooks()
    # One evaluator config for both sets: each set gets its own instance.
    runner = _runner(tmp_path, hooks=[hooks], evaluator=METRIC, stage='test')
    metrics = runner.test()
    assert hooks.calls['before_test'] == hooks.calls['after_test_epoch'] == 1
    assert hooks.calls['after_test'] == hooks.calls['before_test_epoch'] == 1
    assert hooks.calls['before_test_iter'] == 10
    assert not any(name.startswith('before_val') or name.endswith('val_epoch')
                   for name in hooks.calls)
    evaluators = runner.test_loop.evaluators
    assert evaluators[0] is not evaluators[1]
    assert [e.dataset_meta['name'] for e in evaluators] == ['a', 'b']
    expected = _expected(runner.model, *SETS[1])
    assert metrics['b/adaface/accuracy'] == expected['adaface']
    assert 'mean/qaconv/accuracy' in metrics


class _ImageCount(BaseMetric):
    """A metric unaware of set names: keys ``count/images``."""
    default_prefix = 'count'

    def process(self, data_batch, data_samples):
        self.results += [1 for _ in data_samples]

    def compute_metrics(self, results):
        return dict(images=float(len(results)))


def test_foreign_metric_keys_get_the_set_level(tmp_path):
    evaluator = [[METRIC, _ImageCount()] for _ in SETS]
    metrics = _runner(tmp_path, evaluator=evaluator).val()
    assert metrics['a/count/images'] == 16 and metrics['b/count/images'] == 12
    assert 'a/adaface/accuracy' in metrics and 'b/adaface/accuracy' in metrics


def test_bad_set_configurations_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"distinct names.*\['a', 'a'\]"):
        _runner(tmp_path, sets=(('a', 4, 0), ('a', 4, 1))).val()
    with pytest.raises(ValueError, match='one entry per val_dataloader'):
        _runner(tmp_path, evaluator=[METRIC]).val()
    with pytest.raises(ValueError, match='distinct names'):
        _runner(tmp_path, sets=(('mean', 4, 0), )).val()


def test_training_validates_every_epoch_and_keeps_the_best_mean_accuracy(tmp_path):
    hooks = _CountHooks()
    runner = Runner(
        model=_ToyVerifier(), work_dir=str(tmp_path), train_dataloader=_loader('train', 4, 2),
        val_dataloader=[_loader(*s) for s in SETS], val_evaluator=METRIC,
        val_cfg=dict(type='MultiValLoop'),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                           save_best='mean/adaface/accuracy', rule='greater')),
        custom_hooks=[hooks], experiment_name=f'multi_{next(_run_ids)}', default_scope=SCOPE)
    runner.train()
    assert hooks.calls['before_val'] == hooks.calls['after_val_epoch'] == 2
    # The toy embedding ignores the trained weights: both epochs score the same.
    best = runner.message_hub.get_info('best_score')
    assert type(best) is float and best == hooks.metrics['mean/adaface/accuracy']
    assert list(tmp_path.glob('best_mean_adaface_accuracy_epoch_*.pth'))
