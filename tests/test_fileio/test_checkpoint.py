"""Safe checkpoint loading: resume works with no flag, unknown files cannot run code."""
import argparse
import functools
import http.server
import itertools
import json
import os.path as osp
import pickle
import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from torch.utils.data import Dataset

from mmoaml.fileio import (TRUST_ENV_VAR, CheckpointMismatchError, NotACheckpointError,
                           UnsafeCheckpointError, encode_image, load_checkpoint_file,
                           load_model_state, strip_to_weights, trusted_checkpoints)
from mmoaml.fileio.checkpoint import load_from_http_safe, load_from_local_safe

ITERS_PER_EPOCH = 2  # 8 samples, batch 4
_run_ids = itertools.count()  # runners created in the same second need distinct names
# Each Runner makes its default scope the current one; keep it mmoaml's for later tests.
SCOPE = 'mmoaml'

# Resuming needs mmoaml's loader (installed by its entry points, not by the import).
pytestmark = pytest.mark.usefixtures('safe_loader')


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        with torch.no_grad():  # fixed init so that runs are comparable
            self.fc.weight.copy_(torch.tensor([[0.3, -0.2]]))
            self.fc.bias.zero_()

    def forward(self, inputs, labels, mode='tensor'):
        out = self.fc(torch.stack(inputs)).squeeze(1)
        labels = torch.stack(labels)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return [dict(pred=o, gt=t) for o, t in zip(out, labels)]


class _ToyData(Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 2, generator=generator)
        self.y = self.x @ torch.tensor([1.0, 2.0])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


class _ToyMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results += [float((d['pred'] - d['gt'])**2) for d in data_samples]

    def compute_metrics(self, results):
        # A numpy scalar on purpose: it ends up in the message hub (best_score) as in real runs.
        return dict(mse=np.float64(np.mean(results)))


class _RecordResumedState(Hook):
    """Hook capturing what the runner holds right after load_or_resume (before training)."""

    def __init__(self):
        self.state = None

    def before_train(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        self.state = dict(
            epoch=runner.epoch,
            iter=runner.iter,
            lr=optimizer.param_groups[0]['lr'],
            momentum={k: v['momentum_buffer'].clone()
                      for k, v in optimizer.state_dict()['state'].items()},
            loss_count=len(runner.message_hub.get_scalar('train/loss').data[0]),
            best_score=runner.message_hub.get_info('best_score'))



def _runner(work_dir, max_epochs, hooks=(), **kwargs):
    loader = dict(
        dataset=_ToyData(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=4,
        num_workers=0)
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=[_ToyMetric()],
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=[dict(type='MultiStepLR', milestones=[1], by_epoch=True)],
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1, save_best='mse', rule='less'),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(hooks),
        randomness=dict(seed=0),
        experiment_name=f'toy_{next(_run_ids)}',
        default_scope=SCOPE,
        **kwargs)


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """A finished 2-epoch run: its work_dir and final optimizer/message-hub state."""
    work_dir = tmp_path_factory.mktemp('run')
    runner = _runner(work_dir, max_epochs=2)
    runner.train()
    optimizer = runner.optim_wrapper.optimizer
    final = dict(
        lr=optimizer.param_groups[0]['lr'],
        momentum={k: v['momentum_buffer'].clone()
                  for k, v in optimizer.state_dict()['state'].items()},
        loss_count=len(runner.message_hub.get_scalar('train/loss').data[0]),
        best_score=runner.message_hub.get_info('best_score'))
    return work_dir, final


class _RunsCode:
    """Unpickling this object executes Python code that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()', )


class _GetattrEscape:
    """Tries to reach an attribute of an allowed class through builtins.getattr."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


def _weights():
    return {'fc.weight': torch.ones(1, 2), 'fc.bias': torch.zeros(1)}


def test_loader_is_installed_without_patching_torch_load():
    assert CheckpointLoader._get_checkpoint_loader('/some/file.pth') is load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader('https://x/y.pth') is load_from_http_safe
    assert torch.load is torch.serialization.load


def test_resume_restores_epoch_optimizer_scheduler_and_message_hub(trained_run):
    work_dir, final = trained_run
    assert final['lr'] == pytest.approx(0.01)  # MultiStepLR milestone 1 passed: 0.1 * 0.1
    recorder = _RecordResumedState()
    runner = _runner(work_dir, max_epochs=3, hooks=[recorder], resume=True)
    allowlisted_before = set(torch.serialization.get_safe_globals())
    runner.train()
    resumed = recorder.state
    assert (resumed['epoch'], resumed['iter']) == (2, 2 * ITERS_PER_EPOCH)
    assert resumed['lr'] == pytest.approx(final['lr'])
    assert resumed['momentum'].keys() == final['momentum'].keys()
    for key, buffer in final['momentum'].items():
        assert torch.equal(resumed['momentum'][key], buffer)
    assert resumed['loss_count'] == final['loss_count'] == 2 * ITERS_PER_EPOCH
    assert resumed['best_score'] == final['best_score']
    assert (runner.epoch, runner.iter) == (3, 3 * ITERS_PER_EPOCH)
    # The allowlist is scoped to each load: nothing stays registered with torch afterwards.
    assert set(torch.serialization.get_safe_globals()) == allowlisted_before


def test_load_from_of_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': _weights(), 'payload': _RunsCode(marker)}, evil)
    for resume in (False, True):
        runner = Runner(
            model=_ToyModel(),
            work_dir=str(tmp_path / 'wd'),
            load_from=str(evil),
            resume=resume,
            experiment_name=f'toy_{next(_run_ids)}',
            default_scope=SCOPE)
        with pytest.raises(UnsafeCheckpointError) as info:
            runner.load_or_resume()
        message = str(info.value)
        assert str(evil) in message and 'builtins.exec' in message
        assert 'publish_model.py' in message and TRUST_ENV_VAR in message
        assert not marker.exists()
    # The file really is malicious: opting in runs its code (that is why opt-in is explicit).
    with trusted_checkpoints():
        load_checkpoint_file(str(evil))
    assert marker.exists()


def test_guarded_getattr_refuses_other_attributes(tmp_path):
    path = tmp_path / 'escape.pth'
    torch.save({'state_dict': _weights(), 'payload': _GetattrEscape()}, path)
    with pytest.raises(UnsafeCheckpointError, match='getattr') as info:
        load_checkpoint_file(str(path))
    assert 'allowed globals in a way' in str(info.value)


def test_history_buffer_methods_are_restored(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2)
    path = tmp_path / 'hub.pth'
    torch.save({'hub': buffer, 'best': np.float64(0.25)}, path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['hub'].statistics('max') == 2 and loaded['hub'].mean() == pytest.approx(1.75)
    assert loaded['best'] == 0.25


def test_strip_to_weights_loads_with_plain_torch_load(trained_run, tmp_path):
    work_dir, _ = trained_run
    src = osp.join(work_dir, 'epoch_2.pth')
    dst = tmp_path / 'published.pth'
    strip_to_weights(src, str(dst))
    stripped = torch.load(dst)  # torch's defaults: weights_only=True
    assert set(stripped) == {'meta', 'state_dict'}
    assert stripped['meta']['epoch'] == 2
    full = load_checkpoint_file(src)
    assert stripped['state_dict'].keys() == full['state_dict'].keys()
    for key, value in full['state_dict'].items():
        assert torch.equal(stripped['state_dict'][key], value)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(src)  # the unstripped training checkpoint is not weights-only


def test_refusal_of_full_mmengine_checkpoint_says_so(trained_run, tmp_path):
    work_dir, _ = trained_run
    full = load_checkpoint_file(osp.join(work_dir, 'epoch_2.pth'))
    full['message_hub']['runtime_info']['custom'] = argparse.Namespace(note='hook state')
    path = tmp_path / 'custom.pth'
    torch.save(full, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(str(path))
    message = str(info.value)
    # Only the object beyond the allowlist is reported; MMEngine's own state is not at fault.
    assert 'it references: argparse.Namespace. ' in message
    assert 'full MMEngine training checkpoint' in message


def test_strip_to_weights_cleans_meta_and_needs_trust_for_foreign_objects(tmp_path):
    src = tmp_path / 'lightning_like.ckpt'
    torch.save({
        'state_dict': _weights(),
        'meta': {'score': np.float64(0.5), 'args': argparse.Namespace(lr=0.1), 'epoch': 3},
        'hyper_parameters': argparse.Namespace(lr=0.1),
    }, src)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        strip_to_weights(str(src), str(tmp_path / 'out.pth'))
    stripped = strip_to_weights(str(src), str(tmp_path / 'out.pth'), trusted=True)
    loaded = torch.load(tmp_path / 'out.pth')
    assert loaded['meta'] == {'score': 0.5, 'epoch': 3} == stripped['meta']
    assert type(loaded['meta']['score']) is float
    with pytest.raises(ValueError, match='state_dict'):
        torch.save({'weights': _weights()}, tmp_path / 'no_sd.pth')
        strip_to_weights(str(tmp_path / 'no_sd.pth'), str(tmp_path / 'x.pth'))


def test_opt_in_loads_full_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'full.ckpt'
    torch.save({'state_dict': _weights(), 'hyper_parameters': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(str(path))
    assert load_checkpoint_file(str(path), trusted=True)['hyper_parameters'].lr == 0.1
    with trusted_checkpoints():
        runner = Runner(
            model=_ToyModel(),
            work_dir=str(tmp_path / 'wd'),
            load_from=str(path),
            experiment_name=f'toy_{next(_run_ids)}',
            default_scope=SCOPE)
        runner.load_or_resume()
    assert torch.equal(runner.model.fc.weight, torch.ones(1, 2))
    with pytest.raises(UnsafeCheckpointError):  # the context manager does not leak
        load_checkpoint_file(str(path))
    monkeypatch.setenv(TRUST_ENV_VAR, '1')
    assert load_checkpoint_file(str(path))['hyper_parameters'].lr == 0.1


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_checkpoint_file(str(tmp_path / 'nothing.pth'))
    torch.save({'state_dict': _weights()}, tmp_path / 'whole.pth')
    data = (tmp_path / 'whole.pth').read_bytes()
    (tmp_path / 'truncated.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match='truncated.pth'):
        load_checkpoint_file(str(tmp_path / 'truncated.pth'))


def test_http_checkpoint_is_loaded_safely(tmp_path, monkeypatch):
    served = tmp_path / 'served'
    served.mkdir()
    marker = tmp_path / 'marker'
    torch.save({'state_dict': _weights(), 'payload': _RunsCode(marker)}, served / 'evil.pth')
    torch.save({'state_dict': _weights()}, served / 'good.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        good = CheckpointLoader.load_checkpoint(f'{base}/good.pth', map_location='cpu')
        assert torch.equal(good['state_dict']['fc.weight'], torch.ones(1, 2))
        with pytest.raises(UnsafeCheckpointError):
            CheckpointLoader.load_checkpoint(f'{base}/evil.pth', map_location='cpu')
        assert not marker.exists()
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ files that are not checkpoints


@pytest.mark.parametrize('name, content, kind', [
    ('notes.pth', b'epoch 3, lr 0.1\n', 'text'),
    ('config.pth', json.dumps({'state_dict': {}}).encode(), 'JSON'),
    ('face.pth', encode_image(np.zeros((4, 4, 3), np.uint8), '.png'), 'PNG image'),
    ('noise.pth', bytes(np.random.default_rng(0).integers(128, 256, 512, np.uint8)),
     'unknown format'),
    ('empty.pth', b'', 'empty file'),
])
def test_a_file_that_is_no_torch_file_is_named_without_talk_of_trust(tmp_path, name, content,
                                                                      kind):
    path = tmp_path / name
    path.write_bytes(content)
    for trusted in (False, True):  # recognised before any unpickling, trusted or not
        with pytest.raises(NotACheckpointError, match=f'{name}" is not a checkpoint') as info:
            load_checkpoint_file(str(path), trusted=trusted)
        assert kind in str(info.value) and TRUST_ENV_VAR not in str(info.value)


def test_an_npz_is_not_a_checkpoint_but_a_legacy_torch_file_is(tmp_path):
    np.savez(tmp_path / 'arrays.npz', x=np.ones(3))
    with pytest.raises(NotACheckpointError, match='arrays.npz.*zip archive without data.pkl'):
        load_checkpoint_file(str(tmp_path / 'arrays.npz'))
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': _weights()}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint_file(str(legacy))['state_dict']['fc.weight'],
                       torch.ones(1, 2))


@pytest.mark.parametrize('content, words', [
    ([_weights()], 'holds a list, not a dict with a "state_dict"'),
    ({}, "has no \"state_dict\" and is not a dict of tensors; its 0 top-level keys"),
    ({'weights': _weights(), 'epoch': 3}, r"top-level keys: \['weights', 'epoch'\]"),
    ({'state_dict': [torch.ones(1)]}, '"state_dict" is a list'),
    ({'state_dict': {}}, 'empty "state_dict"'),
])
def test_a_checkpoint_without_weights_is_named(tmp_path, content, words):
    path = tmp_path / 'odd.pth'
    torch.save(content, path)
    with pytest.raises(NotACheckpointError, match=words) as info:
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert 'odd.pth' in str(info.value)
    # What MMEngine's Runner does with load_from: the same error, not an AttributeError later.
    runner = Runner(model=_ToyModel(), work_dir=str(tmp_path / 'wd'), load_from=str(path),
                    experiment_name=f'toy_{next(_run_ids)}', default_scope=SCOPE)
    with pytest.raises(NotACheckpointError, match='odd.pth'):
        runner.load_or_resume()


def test_a_bare_state_dict_still_loads(tmp_path):
    torch.save(_weights(), tmp_path / 'bare.pth')  # MMEngine loads these as they are
    runner = Runner(model=_ToyModel(), work_dir=str(tmp_path / 'wd'),
                    load_from=str(tmp_path / 'bare.pth'),
                    experiment_name=f'toy_{next(_run_ids)}', default_scope=SCOPE)
    runner.load_or_resume()
    assert torch.equal(runner.model.fc.weight, torch.ones(1, 2))


# ------------------------------------------------------------------ installation

_SCHEMES = """
import json
from mmengine.runner import CheckpointLoader
def schemes():
    return {p: f'{CheckpointLoader._schemes[p].__module__}.{CheckpointLoader._schemes[p].__name__}'
            for p in ('', 'http://', 'https://')}
import mmoaml, mmoaml.models, mmoaml.datasets, mmoaml.evaluation, mmoaml.engine
imported = schemes()
from mmoaml.utils import register_all_modules
register_all_modules()
print(json.dumps(dict(imported=imported, entry_point=schemes())))
"""


def test_import_leaves_mmengine_loaders_and_the_entry_point_installs_mmoaml_ones():
    result = subprocess.run([sys.executable, '-c', _SCHEMES], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    schemes = json.loads(result.stdout.strip().splitlines()[-1])
    mmengine_loaders = 'mmengine.runner.checkpoint.load_from_'
    assert schemes['imported'] == {'': mmengine_loaders + 'local',
                                   'http://': mmengine_loaders + 'http',
                                   'https://': mmengine_loaders + 'http'}
    mmoaml_loaders = 'mmoaml.fileio.checkpoint.load_from_'
    assert schemes['entry_point'] == {'': mmoaml_loaders + 'local_safe',
                                      'http://': mmoaml_loaders + 'http_safe',
                                      'https://': mmoaml_loaders + 'http_safe'}


# ------------------------------------------------------------------ checked loading into a model


class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(1, 1, 1) for _ in range(6)])
        self.bn = nn.BatchNorm2d(1)


def test_load_model_state_lists_missing_and_unexpected_keys_with_counts():
    net = _Net()
    state = {f'other.{i}.weight': torch.zeros(1) for i in range(12)}
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_state(net, {'state_dict': state}, 'x.pth')
    message = str(info.value)
    # 6 convs x (weight, bias) + bn weight, bias, running mean and var; num_batches_tracked
    # is not required (older checkpoints lack it)
    assert 'checkpoint "x.pth" does not match the model: 16 missing keys' in message
    assert 'convs.0.weight, convs.0.bias' in message and '... (6 more)' in message
    assert '12 unexpected keys' in message and 'other.9.weight, ... (2 more)' in message
    assert 'adaface_to_mmoaml' not in message
    assert len(info.value.missing) == 16 and len(info.value.unexpected) == 12


def test_load_model_state_points_adaface_and_insightface_keys_to_the_converter():
    net = _Net()
    adaface = {'model.input_layer.0.weight': torch.zeros(1), 'model.body.0.res.weight':
               torch.zeros(1), 'head.kernel': torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match='AdaFace checkpoint.*adaface_to_mmoaml'):
        load_model_state(net, {'state_dict': adaface}, 'ada.ckpt')
    insightface = {'conv1.weight': torch.zeros(1), 'layer1.0.bn1.weight': torch.zeros(1),
                   'features.weight': torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match='insightface.*adaface_to_mmoaml'):
        load_model_state(net, insightface, 'backbone.pth')


def test_load_model_state_non_strict_warns_and_loads_the_matching_keys():
    net, source = _Net(), _Net()
    with torch.no_grad():
        source.bn.weight.fill_(3.0)
    state = {f'module.{k}': v for k, v in source.state_dict().items() if k.startswith('bn.')}
    state['extra.weight'] = torch.zeros(1)
    with mock.patch('mmoaml.fileio.model_state.print_log') as log:
        load_model_state(net, {'state_dict': state}, 'part.pth', strict=False)
    warning = log.call_args.args[0]
    assert '12 missing keys' in warning and '1 unexpected keys' in warning
    assert 'extra.weight' in warning and 'strict=False' in warning
    assert torch.equal(net.bn.weight, torch.full((1, ), 3.0))  # 'module.' stripped, loaded
    shapes = dict(source.state_dict(), **{'bn.weight': torch.ones(2)})
    with pytest.raises(CheckpointMismatchError, match=r'bn.weight \(2,\) vs model \(1,\)'):
        load_model_state(net, shapes, 'shape.pth', strict=False)  # never loadable


def test_load_model_state_names_non_finite_weights():
    net, state = _Net(), _Net().state_dict()
    state['convs.2.weight'] = torch.tensor([[[[float('nan')]]]])
    state['bn.running_var'] = torch.tensor([float('inf')])
    with pytest.raises(ValueError, match=r'"nan.pth" has non-finite weights \(NaN/inf\) in 2 '
                       r'tensors: convs.2.weight \(1 NaN, 0 inf\), bn.running_var \(0 NaN, '
                       r'1 inf\)'):
        load_model_state(net, {'state_dict': state}, 'nan.pth', strict=False)
