"""FiniteLossOptimWrapper: non-finite losses skip the update, are counted, training goes on."""
import itertools
import multiprocessing
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmoaml.engine import FiniteLossOptimWrapper
from mmoaml.registry import OPTIM_WRAPPERS

SCOPE = 'mmoaml'  # each Runner makes its scope current; keep mmoaml's for later tests
NAN_SAMPLE = 5  # with batch 2 and no shuffling, sample 5 lands in iteration 2 (0-based)
NAN_ITER = 2
_run_ids = itertools.count()


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.3, -0.2]]))
            self.fc.bias.zero_()

    def forward(self, inputs, labels, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        return dict(loss=((out - torch.stack(labels))**2).mean())


class _ToyData(Dataset):
    """8 samples; one input is NaN, so the batch holding it has a NaN loss."""

    def __init__(self):
        self.x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
        self.y = self.x @ torch.tensor([1.0, 2.0])
        self.x[NAN_SAMPLE, 0] = float('nan')

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


class _RecordParams(Hook):

    def __init__(self):
        self.before, self.after, self.skipped = [], [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before.append(self._state(runner))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after.append(self._state(runner))
        self.skipped.append(runner.message_hub.get_scalar('train/skipped_nonfinite').current())

    @staticmethod
    def _state(runner):
        params = [p.detach().clone() for p in runner.model.parameters()]
        momentum = {k: v['momentum_buffer'].clone()
                    for k, v in runner.optim_wrapper.optimizer.state_dict()['state'].items()}
        return params, momentum


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_registered_and_used_by_the_schedule():
    wrapper = OPTIM_WRAPPERS.build(
        dict(
            type='FiniteLossOptimWrapper',
            _scope_=SCOPE,
            optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)))
    assert isinstance(wrapper, FiniteLossOptimWrapper)


def test_runner_skips_nan_update_counts_it_and_keeps_training(tmp_path):
    recorder = _RecordParams()
    runner = Runner(
        model=_ToyModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(
            type='FiniteLossOptimWrapper', optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[recorder],
        randomness=dict(seed=0),
        experiment_name=f'finite_{next(_run_ids)}',
        default_scope=SCOPE)
    runner.train()

    assert runner.iter == 4  # training went on after the bad batch
    for i, (before, after) in enumerate(zip(recorder.before, recorder.after)):
        params_unchanged = _same(before[0], after[0])
        assert params_unchanged == (i == NAN_ITER), f'iteration {i}'
        if i == NAN_ITER:  # optimizer state (momentum) untouched as well
            assert before[1].keys() == after[1].keys()
            assert _same(before[1].values(), after[1].values())
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    assert all(p.grad is None or not p.grad.any() for p in runner.model.parameters())
    assert runner.optim_wrapper.skipped_updates == 1
    assert recorder.skipped == [0, 0, 1, 1]
    log_files = list(tmp_path.glob('*/*.log'))
    text = log_files[0].read_text()
    assert 'skipped_nonfinite: 1' in text
    assert 'Non-finite loss' in text and f'iteration {NAN_ITER + 1}' in text


def _linear_wrapper(accumulative_counts):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    wrapper = FiniteLossOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        accumulative_counts=accumulative_counts)
    wrapper.message_hub = MessageHub.get_instance(f'finite_acc_{next(_run_ids)}')
    return model, wrapper


def _loss(model, x, poison=False):
    loss = model(x).pow(2).mean()
    return loss * float('inf') if poison else loss


@pytest.mark.parametrize('bad_position', [0, 1])
def test_accumulation_window_with_a_bad_micro_batch_takes_no_step(bad_position):
    xs = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(1))
    model, wrapper = _linear_wrapper(accumulative_counts=2)
    start = [p.detach().clone() for p in model.parameters()]
    for i in range(2):  # first window: one micro-batch is non-finite
        wrapper.update_params(_loss(model, xs[i], poison=i == bad_position))
    assert _same(start, [p.detach() for p in model.parameters()])
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert wrapper.skipped_updates == 1 and wrapper._inner_count == 2

    # The next window is a normal one: mean gradient of its two micro-batches (the loss is
    # divided by accumulative_counts), one SGD step.
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    (_loss(reference, xs[2]) / 2 + _loss(reference, xs[3]) / 2).backward()
    expected = [p.detach() - 0.1 * p.grad for p in reference.parameters()]
    for i in (2, 3):
        wrapper.update_params(_loss(model, xs[i]))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert wrapper.skipped_updates == 1 and wrapper._inner_count == 4
    assert wrapper.message_hub.get_scalar('train/skipped_nonfinite').current() == 1


def test_counter_resumes_from_message_hub():
    model, wrapper = _linear_wrapper(accumulative_counts=1)
    wrapper.message_hub.update_scalar('train/skipped_nonfinite', 3)  # as restored on resume
    wrapper.update_params(_loss(model, torch.ones(2, 3), poison=True))
    assert wrapper.skipped_updates == 4


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank, port, queue):
    """Rank 0 sees a NaN loss at step 1, rank 1 never does; both must skip step 1 together."""
    # A forked child must not enter OpenMP regions the parent used (libgomp is not
    # fork-safe and hangs); one thread keeps every op sequential.
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(3, 1))
    wrapper = FiniteLossOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    wrapper.message_hub = MessageHub.get_instance(f'ddp_{rank}')
    x = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(rank))
    history = []
    for step in range(3):
        with wrapper.optim_context(model):
            loss = _loss(model, x[step], poison=(rank == 0 and step == 1))
        wrapper.update_params(loss)
        history.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # numpy: tensors would be shared through file descriptors that vanish with the process
    queue.put((rank, wrapper.skipped_updates, torch.stack(history).numpy()))
    dist.destroy_process_group()


@pytest.mark.forks_training
def test_ddp_ranks_skip_together_without_hanging():
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    port = _free_port()
    workers = [
        ctx.Process(target=_ddp_worker, args=(r, port, queue), daemon=True) for r in range(2)
    ]
    for w in workers:
        w.start()
    results = dict((r, (s, h)) for r, s, h in (queue.get(timeout=60) for _ in workers))
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    (skipped0, hist0), (skipped1, hist1) = results[0], results[1]
    assert skipped0 == skipped1 == 1
    np.testing.assert_allclose(hist0, hist1, rtol=1e-6)  # identical replicas after every step
    assert (hist0[1] == hist0[0]).all()  # step 1 skipped on both ranks
    assert (hist0[2] != hist0[1]).any()  # and training continued


# --- gradients and buffers are checked too; too many skips in a row stop training -------------

def _wrapper_for(model, **kwargs):
    wrapper = FiniteLossOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), **kwargs)
    wrapper.message_hub = MessageHub.get_instance(f'finite_grad_{next(_run_ids)}')
    return wrapper


def _state(model):
    return [t.detach().clone() for t in itertools.chain(model.parameters(), model.buffers())]


def _nan_gradient(grad):
    return torch.full_like(grad, float('nan'))


def _step(wrapper, model, x, poison_grad=False, poison_loss=False):
    handle = model.weight.register_hook(_nan_gradient) if poison_grad else None
    with wrapper.optim_context(model):
        loss = _loss(model, x, poison=poison_loss)
    assert torch.isfinite(loss) != poison_loss
    wrapper.update_params(loss)
    if handle is not None:
        handle.remove()


def test_nan_gradient_with_a_finite_loss_is_skipped_and_counted():
    model, x = nn.Linear(3, 1), torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    wrapper = _wrapper_for(model)
    start = _state(model)
    _step(wrapper, model, x, poison_grad=True)
    assert _same(start, _state(model))  # parameters unchanged, no momentum state created
    assert wrapper.optimizer.state_dict()['state'] == {}
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert wrapper.skipped_updates == 1
    assert wrapper.message_hub.get_scalar('train/skipped_nonfinite').current() == 1
    _step(wrapper, model, x)  # a clean update goes through
    assert not _same(start, _state(model)) and all(torch.isfinite(t).all() for t in _state(model))
    assert wrapper.skipped_updates == 1 and wrapper.consecutive_skips == 0


class _BatchNormModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 1)

    def forward(self, inputs, mode='loss'):
        return dict(loss_fit=self.fc(self.bn(inputs)).pow(2).mean())


def test_nan_pixel_leaves_batchnorm_statistics_as_they_were():
    torch.manual_seed(0)
    model = _BatchNormModel()
    wrapper = _wrapper_for(model)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    model.train_step(dict(inputs=x), wrapper)  # a clean step moves the statistics
    assert not torch.equal(model.bn.running_mean, torch.zeros(3))
    before = _state(model)
    x_bad = x.clone()
    x_bad[1, 2] = float('nan')
    log_vars = model.train_step(dict(inputs=x_bad), wrapper)
    assert not torch.isfinite(log_vars['loss'])
    assert _same(before, _state(model))  # running statistics restored, parameters unchanged
    assert all(torch.isfinite(t).all() for t in _state(model))
    assert wrapper.skipped_updates == 1


def test_consecutive_skips_stop_training_naming_what_went_non_finite_first():
    model, x = nn.Linear(3, 1), torch.randn(4, 3, generator=torch.Generator().manual_seed(4))
    wrapper = _wrapper_for(model, max_consecutive_skips=3)
    _step(wrapper, model, x, poison_loss=True)
    _step(wrapper, model, x)  # a clean update resets the streak
    _step(wrapper, model, x, poison_grad=True)  # first of the streak: a gradient
    _step(wrapper, model, x, poison_loss=True)
    with pytest.raises(FloatingPointError) as error:
        _step(wrapper, model, x, poison_loss=True)
    message = str(error.value)
    assert '3 consecutive updates skipped' in message
    assert 'gradient of weight' in message and 'loss' not in message.split('had non-finite')[1]
    assert wrapper.skipped_updates == 4
    assert wrapper.message_hub.get_scalar('train/skipped_nonfinite').current() == 4


def test_a_non_finite_buffer_is_named_when_training_stops():
    model = _BatchNormModel()
    wrapper = _wrapper_for(model, max_consecutive_skips=1)
    with pytest.raises(FloatingPointError, match=r'buffer bn\.running_mean, bn\.running_var'):
        model.train_step(dict(inputs=torch.full((4, 3), float('inf'))), wrapper)
    assert all(torch.isfinite(b).all() for b in model.buffers())


@pytest.mark.parametrize('value', [0, -1, 2.5, True])
def test_bad_max_consecutive_skips_is_refused(value):
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        FiniteLossOptimWrapper(
            optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1),
            max_consecutive_skips=value)


class _TwoTermModel(BaseModel):
    """loss_fit is finite; loss_bad is NaN in every iteration."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        fit = ((out - torch.stack(labels))**2).mean()
        return dict(loss_fit=fit, loss_bad=out.mean() * float('nan'))


def test_runner_stops_after_consecutive_skips_naming_the_loss_term(tmp_path):
    runner = Runner(
        model=_TwoTermModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(
            type='FiniteLossOptimWrapper', max_consecutive_skips=3,
            optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        experiment_name=f'finite_{next(_run_ids)}',
        default_scope=SCOPE)
    with pytest.raises(FloatingPointError) as error:
        runner.train()
    message = str(error.value)
    assert 'at iteration 1' in message and 'loss terms loss_bad = nan' in message
    assert 'loss_fit' not in message
    assert runner.iter == 2  # the third iteration raised before counting itself
    assert runner.message_hub.get_scalar('train/skipped_nonfinite').current() == 3
