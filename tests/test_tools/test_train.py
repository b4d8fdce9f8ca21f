"""tools/train.py and tools/dist_train.sh end to end on a tiny OAML run, and resume exactness.

The runs use a tiny OAML (IResNet-18 at 32x32: 2x2x512 maps) on tiny data written here with the
project's writers: a face folder (4 identities x 4 images), an occluded set with masks, a clean
set, and a verification ``.bin``. The schedule and runtime are the shipped base files.
"""
import argparse
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from tool_module import load_tool

from mmoaml.fileio import dump_verification_bin, encode_image
from mmoaml.fileio.checkpoint import load_checkpoint_file

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / 'tools' / 'train.py'
DIST_TRAIN = REPO / 'tools' / 'dist_train.sh'
SIZE = 32
TIMEOUT = 240

# Hooks the tiny runs load through custom_imports: one records the training state at every
# epoch start (to compare a resumed run with an uninterrupted one), one kills the process with
# SIGKILL after a given iteration (no clean-up, as on a pre-empted node).
PROBE = '''
import json
import os
import os.path as osp
import signal

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmoaml.engine.hooks import OcclusionBatchHook
from mmoaml.registry import HOOKS


@HOOKS.register_module()
class RecordEpochStart(Hook):
    priority = 'LOWEST'  # after DistSamplerSeedHook has set the sampler epoch

    def before_train_epoch(self, runner):
        if runner.rank != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        momenta = [s['momentum_buffer'] for s in runner.optim_wrapper.optimizer.state.values()]
        stream = {}
        for hook in runner.hooks:
            if isinstance(hook, OcclusionBatchHook):
                hook.before_save_checkpoint(runner, stream)
        record = dict(
            epoch=runner.epoch, iter=runner.iter,
            batch_mean=float(model.adaface_head.batch_mean),
            batch_std=float(model.adaface_head.batch_std),
            lr=runner.optim_wrapper.get_lr()['lr'][0],
            momentum=sum(float(m.double().abs().sum()) for m in momenta),
            sampler_epoch=runner.train_dataloader.sampler.epoch,
            occlusion_stream=stream['occlusion_batch_hook'])
        with open(osp.join(runner.work_dir, 'epoch_starts.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\\n')


@HOOKS.register_module()
class KillAfterIteration(Hook):
    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
'''

CONFIG = '''
_base_ = [{schedule!r}, {runtime!r}]
custom_imports = dict(imports=['mmoaml', 'train_probe'], allow_failed_imports=False)

model = dict(
    type='OAML',
    data_preprocessor=dict(type='FaceDataPreprocessor'),
    backbone=dict(type='IResNet', depth=18, input_size={size}),
    neck=dict(type='FaceEmbeddingNeck', in_channels=512, feat_size={feat}, embed_dim=32),
    adaface_head=dict(type='AdaFaceHead', embed_dim=32, num_classes=4),
    qaconv_head=dict(type='QAConvHead', num_features=512, height={feat}, width={feat}),
    occlusion_head=dict(type='OcclusionHead', in_channels=512, mid_channels=16))

train_pipeline = [
    dict(type='MedicalMaskOcclusion', prob=0.5),
    dict(type='FaceAugmenter'),
    dict(type='PackFaceInputs'),
]
augment = [dict(type='FaceAugmenter'), dict(type='PackFaceInputs')]
train_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='PKSampler', num_instances=4, batch_size=8),
    dataset=dict(type='FaceFolderDataset', data_root={faces!r}, pipeline=train_pipeline))
val_dataloader = [
    dict(batch_size=8, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
         dataset=dict(type='VerificationBinDataset', data_root={val!r}, ann_file='tiny_lfw.bin',
                      pipeline=[dict(type='PackFaceInputs')])),
]
val_evaluator = dict(type='FaceVerificationMetric', nfolds=2)
test_cfg = None
custom_hooks = [
    dict(type='OcclusionBatchHook', clean_ratio=0.2,
         occluded_loader=dict(batch_size=4, num_workers=0,
                              dataset=dict(type='OccludedFaceDataset', data_root={occluded!r},
                                           pipeline=augment)),
         clean_loader=dict(batch_size=1, num_workers=0,
                           dataset=dict(type='FaceFolderDataset', data_root={clean!r},
                                        pipeline=augment))),
    dict(type='IterationSeedHook'),
    dict(type='RecordEpochStart'),
]
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.1),
]
train_cfg = dict(max_epochs={epochs})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
'''


def _face(rng):
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _write_folder(root, identities, per_id, rng, masks=False):
    for i in range(identities):
        for j in range(per_id):
            img_dir = root / ('images' if masks else '') / f'id{i}'
            img_dir.mkdir(parents=True, exist_ok=True)
            (img_dir / f'{j}.png').write_bytes(encode_image(_face(rng), '.png'))
            if masks:
                mask = np.full((SIZE, SIZE), 255, np.uint8)
                mask[SIZE // 2 + j:] = 0  # lower face covered
                mask_dir = root / 'masks' / f'id{i}'
                mask_dir.mkdir(parents=True, exist_ok=True)
                (mask_dir / f'{j}.png').write_bytes(encode_image(mask, '.png'))


def _write_tiny_experiment(root: Path, epochs: int) -> Path:
    """Data and config of a run with 2 iterations per epoch on one process (1 on 2 ranks).

    The occlusion stream's sets hold exactly one epoch's worth of batches (8 occluded, 2 clean
    faces), so every stream pass ends with an epoch, as the resume comparison needs.
    """
    rng = np.random.default_rng(0)
    _write_folder(root / 'faces', identities=4, per_id=4, rng=rng)
    _write_folder(root / 'occluded', identities=2, per_id=4, rng=rng, masks=True)
    _write_folder(root / 'clean', identities=2, per_id=1, rng=rng)
    (root / 'val').mkdir()
    images = [encode_image(_face(rng), '.png') for _ in range(20)]
    dump_verification_bin(str(root / 'val' / 'tiny_lfw.bin'), images, [True, False] * 5)
    (root / 'train_probe.py').write_text(PROBE)
    config = root / 'tiny.py'
    config.write_text(
        CONFIG.format(
            schedule=str(REPO / 'configs/_base_/schedules/sgd_multistep_28e.py'),
            runtime=str(REPO / 'configs/_base_/default_runtime.py'),
            size=SIZE, feat=SIZE // 16, epochs=epochs, faces=str(root / 'faces'),
            val=str(root / 'val'), occluded=str(root / 'occluded'),
            clean=str(root / 'clean')))
    return config


def _env(root: Path) -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(root), str(REPO), env.get('PYTHONPATH', '')])
    env['OMP_NUM_THREADS'] = '1'  # identical reductions in every run, no oversubscription
    env['PYTHON'] = sys.executable
    return env


def _train(root, config, work_dir, *args):
    return subprocess.Popen(
        [sys.executable, str(TRAIN), str(config), '--work-dir', str(work_dir), *args],
        env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _records(work_dir):
    with open(work_dir / 'epoch_starts.jsonl') as f:
        return [json.loads(line) for line in f]


def test_dist_train_two_cpu_processes_trains_validates_and_saves(tmp_path):
    """DDP over gloo on 2 CPU processes, with --amp (bf16 autocast on the CPU),
    --auto-scale-lr and the channels_last layout switched on from the command line."""
    config = _write_tiny_experiment(tmp_path, epochs=2)
    work_dir = tmp_path / 'work'
    env = _env(tmp_path)
    env['PORT'] = str(_free_port())
    proc = subprocess.run(
        ['bash', str(DIST_TRAIN), str(config), '2', '--work-dir', str(work_dir), '--amp',
         '--auto-scale-lr', '--cfg-options', 'model.data_preprocessor.channels_last=True'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-4000:]
    log = proc.stdout
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert "type='mmoaml.engine.wrappers.cpu_distributed.CPUDistributedDataParallel'" in log
    assert "type='AutocastOptimWrapper'" in log and "dtype='bfloat16'" in log
    assert 'channels_last=True' in log
    # total batch 2 x 8 against the schedule's base of 256
    assert 'current batch size is 16. Scaling the original LR by 0.0625' in log
    assert 'skipped_nonfinite: 0' in log
    assert log.count('Epoch(train) [1][1/1]') == 1 and log.count('Epoch(train) [2][1/1]') == 1
    assert 'loss_qaconv_pair' in log and 'loss_occlusion' in log  # OAML with the occlusion batch
    assert log.count('tiny_lfw/adaface/accuracy: ') == 2  # validated after both epochs
    assert log.count('tiny_lfw/combined/accuracy: ') == 2
    checkpoint = load_checkpoint_file(str(work_dir / 'epoch_2.pth'))  # no trust opt-in
    assert checkpoint['meta']['epoch'] == 2 and checkpoint['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in checkpoint['state_dict'])
    assert 'occlusion_batch_hook' in checkpoint and 'optimizer' in checkpoint
    # both ranks took one PK batch of 8 per epoch: 2 identities x 4 images each
    records = _records(work_dir)
    assert [r['sampler_epoch'] for r in records] == [0, 1]


def test_killed_run_resumed_ends_like_an_uninterrupted_run(tmp_path):
    config = _write_tiny_experiment(tmp_path, epochs=2)
    (tmp_path / 'killed.py').write_text(
        "_base_ = ['./tiny.py']\n"
        "custom_hooks = [*_base_.custom_hooks, dict(type='KillAfterIteration', iteration=3)]\n")
    straight_dir, broken_dir = tmp_path / 'straight', tmp_path / 'broken'
    straight = _train(tmp_path, config, straight_dir)
    killed = _train(tmp_path, tmp_path / 'killed.py', broken_dir)
    code, out = _finish(killed)
    # killed in the middle of the second (last) epoch, after the epoch-1 checkpoint
    assert code == -signal.SIGKILL, out[-4000:]
    assert (broken_dir / 'epoch_1.pth').exists() and not (broken_dir / 'epoch_2.pth').exists()
    resumed = _train(tmp_path, config, broken_dir, '--resume')
    for proc in (straight, resumed):
        code, out = _finish(proc)
        assert code == 0, out[-4000:]
    assert 'resumed epoch: 1, iter: 2' in out

    # The state restored at the start of epoch 2 is the uninterrupted run's at that point:
    # AdaFace EMA buffers, optimizer momentum, lr, sampler epoch, occlusion streams.
    straight_records, broken_records = _records(straight_dir), _records(broken_dir)
    assert [r['epoch'] for r in straight_records] == [0, 1]
    assert [r['epoch'] for r in broken_records] == [0, 1, 1]  # epoch 1 started twice
    assert broken_records[1] == broken_records[2] == straight_records[1]
    assert straight_records[1]['sampler_epoch'] == 1
    assert straight_records[1]['occlusion_stream'] == dict(
        occluded=dict(next_epoch=1), clean=dict(next_epoch=1))
    assert straight_records[1]['lr'] == pytest.approx(0.005)  # warm-up done, x0.1 at epoch 1
    assert straight_records[1]['batch_mean'] != 20.0  # the EMA moved from its initial value
    assert straight_records[1]['momentum'] > 0

    ref = load_checkpoint_file(str(straight_dir / 'epoch_2.pth'))
    got = load_checkpoint_file(str(broken_dir / 'epoch_2.pth'))
    assert got['meta']['epoch'] == ref['meta']['epoch'] == 2
    assert got['meta']['iter'] == ref['meta']['iter'] == 4
    assert sorted(got['state_dict']) == sorted(ref['state_dict'])
    for key, value in ref['state_dict'].items():
        assert torch.equal(got['state_dict'][key], value), key
    ref_state, got_state = ref['optimizer']['state'], got['optimizer']['state']
    assert sorted(ref_state) == sorted(got_state)
    for idx, state in ref_state.items():
        assert torch.equal(got_state[idx]['momentum_buffer'], state['momentum_buffer'])
    assert got['optimizer']['param_groups'] == ref['optimizer']['param_groups']
    assert got['param_schedulers'] == ref['param_schedulers']
    assert got['occlusion_batch_hook'] == ref['occlusion_batch_hook']


# ------------------------------------------------------------------ argument handling


def _load_train_module():
    return load_tool('train.py', 'mmoaml_train_tool')


def _args(**kwargs):
    defaults = dict(config='configs/oaml_ir50.py', work_dir=None, resume=None, amp=False,
                    amp_dtype=None, no_validate=False, auto_scale_lr=False, cfg_options=None,
                    launcher='none', no_pin_memory=False, no_persistent_workers=False)
    defaults.update(kwargs)
    return argparse.Namespace(**defaults)


def _cfg():
    return Config(dict(
        optim_wrapper=dict(type='FiniteLossOptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
        auto_scale_lr=dict(base_batch_size=256, enable=False),
        val_cfg=dict(type='MultiValLoop'), val_dataloader=[dict()], val_evaluator=dict()))


def test_merge_args_resume_work_dir_and_options():
    train = _load_train_module()
    cfg = train.merge_args(_cfg(), _args(resume='auto'))
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == osp.join('./work_dirs', 'oaml_ir50')
    cfg = train.merge_args(_cfg(), _args(resume='a/epoch_3.pth', work_dir='w',
                                         no_validate=True, auto_scale_lr=True))
    assert cfg.resume is True and cfg.load_from == 'a/epoch_3.pth' and cfg.work_dir == 'w'
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.auto_scale_lr.enable is True
    # --cfg-options come first, so the named flags win over them
    cfg = train.merge_args(_cfg(), _args(amp=True, cfg_options={
        'optim_wrapper.type': 'OptimWrapper', 'optim_wrapper.optimizer.lr': 0.2}))
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.optimizer.lr == 0.2
    with pytest.raises(ValueError, match='auto_scale_lr'):
        train.merge_args(Config(dict(optim_wrapper=dict())), _args(auto_scale_lr=True))


def test_amp_selects_the_autocast_wrapper_for_this_device():
    train = _load_train_module()
    cfg = train.merge_args(_cfg(), _args(amp=True))
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'auto'
    if torch.cuda.is_available():
        assert cfg.optim_wrapper.dtype == 'float16'
    else:
        assert cfg.optim_wrapper.dtype == 'bfloat16'
        with pytest.raises(ValueError, match='float16 needs CUDA'):
            train.merge_args(_cfg(), _args(amp=True, amp_dtype='float16'))
    cfg = train.merge_args(_cfg(), _args(amp=True, amp_dtype='bfloat16'))
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    custom = _cfg()
    custom.optim_wrapper.type = 'SomeOtherWrapper'
    with pytest.raises(ValueError, match='SomeOtherWrapper'):
        train.merge_args(custom, _args(amp=True))


def _parse(train, monkeypatch, *argv):
    monkeypatch.setattr(sys, 'argv', ['train.py', 'configs/oaml_ir50.py', *argv])
    return train.parse_args()


def test_bare_resume_needs_a_checkpoint_and_resume_auto_does_not(tmp_path, monkeypatch):
    train = _load_train_module()
    work_dir = str(tmp_path)
    bare = _parse(train, monkeypatch, '--resume', '--work-dir', work_dir)
    with pytest.raises(FileNotFoundError, match=f'no checkpoint to resume in the work dir '
                       f'{work_dir}'):
        train.merge_args(_cfg(), bare)
    # --resume auto: MMEngine's behaviour, resume if there is a checkpoint, else start
    auto = train.merge_args(_cfg(), _parse(train, monkeypatch, '--resume', 'auto',
                                           '--work-dir', work_dir))
    assert auto.resume is True and auto.load_from is None
    (tmp_path / 'epoch_3.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    cfg = train.merge_args(_cfg(), bare)
    assert cfg.resume is True and cfg.load_from == str(tmp_path / 'epoch_3.pth')


def _loaders_cfg(**train_loader):
    loader = dict(batch_size=8, num_workers=2, persistent_workers=True,
                  sampler=dict(type='PKSampler', num_instances=4, batch_size=8), dataset={})
    loader.update(train_loader)
    cfg = _cfg()
    cfg.train_dataloader = loader
    cfg.val_dataloader = [dict(num_workers=0, persistent_workers=True, dataset={}),
                          dict(num_workers=2, persistent_workers=True, dataset={})]
    cfg.test_dataloader = dict(num_workers=1, pin_memory=True, dataset={})
    cfg.custom_hooks = [dict(type='OcclusionBatchHook',
                             occluded_loader=dict(num_workers=2, dataset={}),
                             clean_loader=dict(num_workers=0, persistent_workers=True,
                                               dataset={})),
                        dict(type='IterationSeedHook')]
    return cfg


def _loaders(cfg):
    hook = cfg.custom_hooks[0]
    return [cfg.train_dataloader, *cfg.val_dataloader, cfg.test_dataloader,
            hook.occluded_loader, hook.clean_loader]


def test_pk_sampler_and_loader_batch_sizes_must_agree():
    train = _load_train_module()
    with pytest.raises(ValueError, match=r'train_dataloader.batch_size=16 differs from '
                       r'train_dataloader.sampler.batch_size=8'):
        train.merge_args(_loaders_cfg(batch_size=16), _args())
    # ... also when the difference comes from --cfg-options
    with pytest.raises(ValueError, match='train_dataloader.sampler.batch_size=8'):
        train.merge_args(_loaders_cfg(), _args(cfg_options={'train_dataloader.batch_size': 4}))
    train.merge_args(_loaders_cfg(), _args(cfg_options={'train_dataloader.batch_size': 16,
                                                        'train_dataloader.sampler.batch_size':
                                                        16}))


def test_loaders_without_workers_are_not_persistent(monkeypatch):
    train = _load_train_module()
    cfg = train.merge_args(_loaders_cfg(), _parse(train, monkeypatch))
    assert [loader.get('persistent_workers') for loader in _loaders(cfg)] == [
        True, False, True, None, None, False]
    # what failed before: a validation loader switched to num_workers=0 from the command line
    cfg = train.merge_args(_loaders_cfg(), _args(cfg_options={
        'val_dataloader.1.num_workers': 0}))
    assert cfg.val_dataloader[1].persistent_workers is False


def test_no_pin_memory_and_no_persistent_workers_reach_every_loader(monkeypatch):
    train = _load_train_module()
    args = _parse(train, monkeypatch, '--no-pin-memory', '--no-persistent-workers')
    cfg = train.merge_args(_loaders_cfg(), args)
    for loader in _loaders(cfg):
        assert loader.pin_memory is False and loader.persistent_workers is False
    assert 'pin_memory' not in cfg.custom_hooks[1]  # a hook without loaders is left alone


# ------------------------------------------------------------------ slurm launcher


def _fake_srun(tmp_path, **env_vars):
    """Run slurm_train.sh against an ``srun`` that records its arguments, one per line."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n'
                    'printf "%s\\n" "$PYTHONPATH" >> "$SRUN_LOG"\n')
    srun.chmod(0o755)
    log = tmp_path / 'srun_args.txt'
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               SRUN_LOG=str(log), PYTHON='/opt/py/bin/python', **env_vars)
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'slurm_train.sh'), 'part', 'job', 'cfg.py', 'work dir',
         '--cfg-options', 'a=b c', '--amp'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    return log.read_text().splitlines()


def test_slurm_train_hands_srun_the_job_and_train_arguments(tmp_path):
    args = _fake_srun(tmp_path, GPUS='16', GPUS_PER_NODE='8', SRUN_ARGS='--time=10 --exclusive')
    *srun_args, pythonpath = args
    assert srun_args[:2] == ['-p', 'part']
    for expected in ('--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                     '--cpus-per-task=5', '--kill-on-bad-exit=1', '--time=10', '--exclusive'):
        assert expected in srun_args
    command = srun_args[srun_args.index('/opt/py/bin/python'):]
    assert command == ['/opt/py/bin/python', '-u', str(REPO / 'tools' / 'train.py'), 'cfg.py',
                       '--work-dir=work dir', '--launcher=slurm', '--cfg-options', 'a=b c',
                       '--amp']
    assert Path(pythonpath.split(os.pathsep)[0]).resolve() == REPO


def test_slurm_train_without_gpus_requests_no_gres(tmp_path):
    args = _fake_srun(tmp_path, GPUS='2', GPUS_PER_NODE='2', GRES='')
    assert not any(a.startswith('--gres') for a in args)
    assert '--ntasks=2' in args and '--launcher=slurm' in args


def test_missing_data_stops_before_the_runner_with_every_file_and_its_source(tmp_path):
    """The CASIA config without its data: one short error naming every file and what makes it,
    within seconds (no Runner, no model, no log of hundreds of lines)."""
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, str(TRAIN), str(REPO / 'configs' / 'oaml_ir50.py'),
         '--work-dir', str(work_dir)],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode != 0, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= 25, out  # the message itself is 15 lines, plus import warnings
    assert '11 data file(s) missing for the train/val loaders of oaml_ir50.py' in out
    for name in ('train.rec', 'train.idx', 'lfw.bin', 'cfp_fp.bin', 'agedb_30.bin', 'calfw.bin',
                 'cplfw.bin', 'lfw_mask_probe.bin', 'lfw_mask_both.bin', 'lfw_niqab_probe.bin',
                 'lfw_sunglasses_probe.bin'):
        assert f'/{name} (file;' in out, name
    assert "InsightFace's data zoo" in out and 'faces_webface_112x112' in out
    assert ('make_occluded_bin.py data/faces_webface_112x112/lfw.bin --out-dir data/occluded '
            '--protocols mask_probe mask_both niqab_probe sunglasses_probe') in out
    assert 'Traceback' not in out and 'Runner' not in out
    assert not work_dir.exists()  # nothing was built
