"""IterationSeedHook: a run resumed at an epoch boundary draws what an unbroken run draws."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmoaml.engine.hooks import IterationSeedHook
from mmoaml.registry import HOOKS

# Resuming needs mmoaml's loader (installed by its entry points, not by the import).
pytestmark = pytest.mark.usefixtures('safe_loader')

SCOPE = 'mmoaml'
_run_ids = itertools.count()


class _DropoutModel(BaseModel):
    """Regression through dropout: the weights depend on every mask drawn."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.fc(self.dropout(torch.stack(inputs))).squeeze(1)
        return dict(loss=(out - torch.stack(targets)).pow(2).mean())


class _NoisyData(Dataset):
    """Each fetch adds NumPy noise, like an in-process augmentation (num_workers=0)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        x = torch.arange(4, dtype=torch.float32) + i + float(np.random.rand())
        return dict(inputs=x, targets=x.sum())


class _DrawInValidation(Hook):
    """Validation-time draws (as a val loader's iterator does) between checkpoint and epoch."""

    def after_train_epoch(self, runner):
        torch.rand(5)
        np.random.rand(5)


def _train(work_dir, max_epochs, with_hook=True, resume=False):
    hooks = [_DrawInValidation()] + ([dict(type='IterationSeedHook')] if with_hook else [])
    runner = Runner(
        model=_DropoutModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_NoisyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=hooks,
        resume=resume,
        randomness=dict(seed=3),
        experiment_name=f'iteration_seed_{next(_run_ids)}',
        default_scope=SCOPE)
    runner.train()
    return runner.model.fc.weight.detach().clone()


def _resumed(tmp_path, with_hook):
    """Weights of 4 epochs straight, and of 2 epochs then a resume to 4 (a fresh process state)."""
    straight = _train(tmp_path / 'straight', 4, with_hook)
    _train(tmp_path / 'broken', 2, with_hook)
    torch.manual_seed(123)  # whatever the process drew before the restart must not matter
    np.random.seed(123)
    return straight, _train(tmp_path / 'broken', 4, with_hook, resume=True)


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    straight, resumed = _resumed(tmp_path, with_hook=True)
    assert torch.equal(straight, resumed)


def test_without_the_hook_the_resumed_run_differs(tmp_path):
    straight, resumed = _resumed(tmp_path, with_hook=False)
    assert not torch.equal(straight, resumed)  # so the test above is not vacuous


def test_draws_depend_only_on_seed_and_iteration():
    runner = type('R', (), dict(seed=7, iter=5))()
    hook = HOOKS.build(dict(type='IterationSeedHook', _scope_=SCOPE))
    assert isinstance(hook, IterationSeedHook) and hook.priority == 'LOWEST'
    hook.after_train_iter(runner, 0)  # seeds iteration 6
    first = (torch.rand(3), np.random.rand(3))
    torch.rand(100)
    runner.iter = 6
    hook.before_train_epoch(runner)  # iteration 6 again, after unrelated draws
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    runner.iter = 7
    hook.before_train_epoch(runner)
    assert not torch.equal(torch.rand(3), first[0])
    runner.seed, runner.iter = 8, 6
    hook.before_train_epoch(runner)
    assert not torch.equal(torch.rand(3), first[0])
