"""AutocastOptimWrapper: autocast on CPU, optional loss scaling, non-finite losses skipped."""
import itertools

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmoaml.engine import AutocastOptimWrapper, FiniteLossOptimWrapper
from mmoaml.fileio.checkpoint import load_checkpoint_file
from mmoaml.registry import OPTIM_WRAPPERS

SCOPE = 'mmoaml'
LR = 0.5
_run_ids = itertools.count()


def _linear():
    fc = nn.Linear(3, 1)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.5, -0.25, 0.125]]))
        fc.bias.fill_(0.0625)
    return fc


def _wrapper(fc, **kwargs):
    return AutocastOptimWrapper(optimizer=torch.optim.SGD(fc.parameters(), lr=LR), **kwargs)


def _inputs():
    return torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])


def _expected_update(dtype):
    """SGD step by hand: the same autocast forward, float32 gradients, ``p - lr * grad``."""
    fc = _linear()
    with torch.autocast('cpu', dtype=dtype):
        out = fc(_inputs())
    loss = out.float().pow(2).mean()
    grads = torch.autograd.grad(loss, list(fc.parameters()))
    return [(p - LR * g).detach() for p, g in zip(fc.parameters(), grads)]


def test_registered_and_a_finite_loss_wrapper():
    fc = _linear()
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper', _scope_=SCOPE,
             optimizer=torch.optim.SGD(fc.parameters(), lr=LR)))
    assert isinstance(wrapper, FiniteLossOptimWrapper)
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.device_type == 'cpu'
    assert wrapper.loss_scaler is None  # bfloat16 needs no scaling


def test_context_autocasts_the_forward_and_only_there():
    fc = _linear()
    wrapper = _wrapper(fc)
    with wrapper.optim_context(fc):
        assert torch.is_autocast_enabled('cpu')
        assert fc(_inputs()).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled('cpu')
    assert fc(_inputs()).dtype == torch.float32


@pytest.mark.parametrize('dtype, scaled', [(torch.bfloat16, False), (torch.float16, True)])
def test_update_equals_sgd_on_the_autocast_gradients(dtype, scaled):
    fc = _linear()
    wrapper = _wrapper(fc, dtype=str(dtype).replace('torch.', ''))
    assert (wrapper.loss_scaler is not None) == scaled  # 'auto': dynamic scaling for float16
    with wrapper.optim_context(fc):
        out = fc(_inputs())
    wrapper.update_params(out.float().pow(2).mean())
    # The scale is a power of two, so unscaling is exact and the step is the unscaled one.
    for param, expected in zip(fc.parameters(), _expected_update(dtype)):
        torch.testing.assert_close(param.detach(), expected, rtol=0, atol=0)


def test_non_finite_loss_is_skipped_and_counted_not_seen_by_the_scaler():
    fc = _linear()
    wrapper = _wrapper(fc, dtype='float16')
    before = [p.detach().clone() for p in fc.parameters()]
    scale, skipped = wrapper.loss_scaler.get_scale(), wrapper.skipped_updates
    with wrapper.optim_context(fc):
        out = fc(_inputs())
    wrapper.update_params(out.float().sum() * float('nan'))
    assert all(torch.equal(p, b) for p, b in zip(fc.parameters(), before))
    assert wrapper.skipped_updates == skipped + 1
    assert wrapper.loss_scaler.get_scale() == scale


def test_nan_gradient_without_a_scaler_is_skipped_and_counted():
    fc = _linear()
    wrapper = _wrapper(fc, dtype='bfloat16')  # no scaler: the wrapper checks the gradients
    before = [p.detach().clone() for p in fc.parameters()]
    skipped = wrapper.skipped_updates
    with wrapper.optim_context(fc):
        out = fc(_inputs())
    fc.bias.register_hook(lambda grad: grad * float('nan'))
    wrapper.update_params(out.float().pow(2).mean())  # finite loss
    assert all(torch.equal(p, b) for p, b in zip(fc.parameters(), before))
    assert wrapper.skipped_updates == skipped + 1


def test_overflowing_gradients_shrink_the_scale_without_a_counted_skip():
    fc = _linear()
    wrapper = _wrapper(fc, dtype='float16', loss_scale=dict(init_scale=2.0**16, growth_interval=1))
    before = [p.detach().clone() for p in fc.parameters()]
    skipped = wrapper.skipped_updates  # the count lives in the (global) message hub
    with wrapper.optim_context(fc):
        out = fc(_inputs())
    # finite loss, but loss * scale overflows in the float16 backward of the linear layer
    wrapper.update_params(out.float().sum() * 1e30)
    assert all(torch.equal(p, b) for p, b in zip(fc.parameters(), before))
    assert wrapper.loss_scaler.get_scale() == 2.0**15  # backoff factor 0.5
    assert wrapper.skipped_updates == skipped


def test_constant_scale_stays_constant():
    fc = _linear()
    wrapper = _wrapper(fc, dtype='float16', loss_scale=128.0)
    for _ in range(3):
        with wrapper.optim_context(fc):
            out = fc(_inputs())
        wrapper.update_params(out.float().pow(2).mean())
    assert wrapper.loss_scaler.get_scale() == 128.0


def test_scaler_state_round_trips_through_the_state_dict():
    fc = _linear()
    wrapper = _wrapper(fc, dtype='float16', loss_scale=dict(init_scale=8.0, growth_interval=1))
    with wrapper.optim_context(fc):
        out = fc(_inputs())
    wrapper.update_params(out.float().pow(2).mean())
    state = wrapper.state_dict()
    assert state['loss_scaler']['scale'] == 16.0  # grew after one finite step
    restored = _wrapper(_linear(), dtype='float16')
    restored.load_state_dict(state)
    assert restored.loss_scaler.get_scale() == 16.0
    assert 'loss_scaler' in state  # the caller's dict is left intact
    unscaled = _wrapper(_linear())
    unscaled.load_state_dict(state)  # a scaler state is ignored without a scaler
    assert 'loss_scaler' not in unscaled.state_dict()


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(dtype='float32'), ValueError, 'dtype must be one of'),
    (dict(loss_scale='static'), TypeError, 'loss_scale must be'),
    (dict(device_type='no_such_device'), ValueError, 'does not support device type'),
])
def test_bad_arguments_are_refused(kwargs, error, words):
    with pytest.raises(error, match=words):
        _wrapper(_linear(), **kwargs)


class _Regression(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = _linear()

    def forward(self, inputs, targets, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        assert out.dtype == torch.float16  # the Runner's train_step runs under the context
        return dict(loss=(out.float() - torch.stack(targets)).pow(2).mean())


class _Data(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, i):
        x = torch.tensor([float(i), 1.0, -1.0])
        return dict(inputs=x, targets=x.sum())



def _train(work_dir, max_iters, resume=False):
    runner = Runner(
        model=_Regression(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=_Data(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, num_workers=0),
        optim_wrapper=dict(type='AutocastOptimWrapper', dtype='float16',
                           loss_scale=dict(init_scale=4.0, growth_interval=1),
                           optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        resume=resume,
        experiment_name=f'autocast_{next(_run_ids)}',
        default_scope=SCOPE)
    runner.train()
    return runner


def test_runner_trains_and_resumes_the_scale(tmp_path, safe_loader):
    runner = _train(tmp_path, max_iters=2)
    checkpoint = load_checkpoint_file(str(tmp_path / 'iter_2.pth'))  # no opt-in needed
    assert checkpoint['optimizer']['loss_scaler']['scale'] == 16.0  # 4 -> 8 -> 16
    resumed = _train(tmp_path, max_iters=3, resume=True)
    assert resumed.iter == 3
    assert resumed.optim_wrapper.loss_scaler.get_scale() == 32.0
    assert runner.optim_wrapper.loss_scaler.get_scale() == 16.0
