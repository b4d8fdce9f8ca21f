"""FiniteCheckpointHook: a NaN/inf weight, buffer or optimizer state blocks the save."""
import itertools

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmoaml.engine.hooks import FiniteCheckpointHook
from mmoaml.registry import HOOKS

SCOPE = 'mmoaml'
_run_ids = itertools.count()


class _Model(BaseModel):

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.fc(self.bn(torch.stack(inputs))).squeeze(1)
        return dict(loss=(out - torch.stack(targets)).pow(2).mean())


class _Data(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, i):
        x = torch.tensor([float(i), 1.0 - i])
        return dict(inputs=x, targets=x.sum())


def _runner(work_dir):
    return Runner(
        model=_Model(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, num_workers=0),
        optim_wrapper=dict(type='FiniteLossOptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
        custom_hooks=[dict(type='FiniteCheckpointHook')],
        experiment_name=f'finite_ckpt_{next(_run_ids)}',
        default_scope=SCOPE)


def test_registered():
    hook = HOOKS.build(dict(type='FiniteCheckpointHook', _scope_=SCOPE))
    assert isinstance(hook, FiniteCheckpointHook) and hook.priority == 'LOWEST'


def test_finite_checkpoints_are_saved(tmp_path):
    runner = _runner(tmp_path)
    runner.train()
    assert (tmp_path / 'iter_1.pth').exists() and (tmp_path / 'iter_2.pth').exists()


@pytest.mark.parametrize('poison', ['bn.running_mean', 'fc.weight', 'momentum'])
def test_non_finite_entry_refuses_the_save_and_names_it(tmp_path, poison):
    runner = _runner(tmp_path)
    runner.train()
    model = runner.model
    with torch.no_grad():
        if poison == 'momentum':
            state = runner.optim_wrapper.optimizer.state[model.fc.bias]
            state['momentum_buffer'].fill_(float('inf'))
        else:
            tensors = dict(model.named_buffers(), **dict(model.named_parameters()))
            tensors[poison].view(-1)[0] = float('nan')
    # optimizer state is keyed by parameter index: bn.weight, bn.bias, fc.weight, fc.bias
    name = dict(momentum='optimizer.state.3.momentum_buffer').get(poison, f'state_dict.{poison}')
    with pytest.raises(FloatingPointError, match=rf'not saved, 1 tensor\(s\).*{name}'):
        runner.save_checkpoint(str(tmp_path), 'bad.pth')
    assert not (tmp_path / 'bad.pth').exists()


def test_message_counts_what_it_does_not_show():
    checkpoint = dict(state_dict={f'w{i}': torch.tensor([float('nan')]) for i in range(12)},
                      message_hub=dict(loss=torch.tensor(float('nan'))),  # history: not checked
                      optimizer=dict(state={0: dict(step=torch.tensor(3))}))
    with pytest.raises(FloatingPointError, match=r'12 tensor\(s\).*w9 and 2 more$'):
        FiniteCheckpointHook().before_save_checkpoint(None, checkpoint)
    FiniteCheckpointHook().before_save_checkpoint(None, dict(state_dict=dict(w=torch.ones(2))))
