"""OcclusionBatchHook: an occluded + clean batch reaches the model every iteration."""
import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmcv.transforms import RandomApply
from mmengine.dataset import BaseDataset
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from mmoaml.datasets.transforms import MedicalMaskOcclusion
from mmoaml.engine.hooks import OcclusionBatchHook
from mmoaml.fileio import NotACheckpointError
from mmoaml.fileio.checkpoint import load_checkpoint_file
from mmoaml.registry import HOOKS

SCOPE = 'mmoaml'  # each Runner makes its scope current; keep mmoaml's for later tests
_run_ids = itertools.count()
NUM_OCCLUDED, OCCLUDED_BATCH = 8, 4  # 2 batches per pass
NUM_CLEAN, CLEAN_BATCH = 3, 1  # 3 batches per pass; 4 + 1 is a clean share of 0.2

# Resuming needs mmoaml's loader (installed by its entry points, not by the import).
pytestmark = pytest.mark.usefixtures('safe_loader')


class _Faces(BaseDataset):
    """``num`` tiny samples whose data sample names their source and index."""

    def __init__(self, source, num, pipeline=()):
        self.source, self.num = source, num
        super().__init__(pipeline=list(pipeline), serialize_data=False)

    def load_data_list(self):
        return [dict(sample_idx=i) for i in range(self.num)]

    def prepare_data(self, idx):
        sample = BaseDataElement(metainfo=dict(source=self.source, sample_idx=idx))
        return dict(inputs=torch.full((3, 2, 2), idx, dtype=torch.uint8), data_samples=sample)


class _Stacked(_Faces):

    def prepare_data(self, idx):
        return dict(inputs=torch.full((3, 2, 2), idx, dtype=torch.uint8),
                    data_samples=torch.tensor(idx))


class _PassOcc(BaseDataPreprocessor):
    """Stacks the main batch and hands ``occ`` on as ``occ_inputs``/``occ_data_samples``."""

    def forward(self, data, training=False):
        out = dict(inputs=torch.stack(data['inputs']).float(), data_samples=data['data_samples'])
        if 'occ' in data:
            out.update(occ_inputs=torch.stack(data['occ']['inputs']).float(),
                       occ_data_samples=data['occ']['data_samples'])
        return out


class _Recorder(BaseModel):
    """Records what each training forward receives."""

    def __init__(self):
        super().__init__(data_preprocessor=_PassOcc())
        self.weight = nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor', occ_inputs=None,
                occ_data_samples=None):
        self.seen.append(
            dict(
                main=[s.source for s in data_samples],
                occ_shape=None if occ_inputs is None else tuple(occ_inputs.shape),
                occ=[(s.source, s.sample_idx) for s in occ_data_samples or []]))
        return dict(loss=(self.weight * inputs.mean()).sum())


def _hook(**kwargs):
    return OcclusionBatchHook(
        occluded_loader=dict(dataset=_Faces('occluded', NUM_OCCLUDED), batch_size=OCCLUDED_BATCH),
        clean_loader=dict(dataset=_Faces('clean', NUM_CLEAN), batch_size=CLEAN_BATCH),
        **kwargs)



def _train(work_dir, hook, max_iters, resume_from=None):
    runner = Runner(
        model=_Recorder(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Faces('main', 6),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False)),
        custom_hooks=[hook],
        load_from=resume_from,
        resume=resume_from is not None,
        randomness=dict(seed=0),
        experiment_name=f'occlusion_hook_{next(_run_ids)}',
        default_scope=SCOPE)
    runner.train()
    return runner


def _indices(seen, source):
    return [[idx for src, idx in step['occ'] if src == source] for step in seen]


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    """5 iterations (checkpoints at 3 and 5), shared by the tests that read it."""
    work_dir = tmp_path_factory.mktemp('occlusion_hook')
    hook = _hook()
    return work_dir, hook, _train(work_dir, hook, max_iters=5)


def test_every_iteration_gets_the_mix_and_the_streams_cycle_with_new_epochs(first_run):
    _, hook, runner = first_run
    seen = runner.model.seen
    assert len(seen) == 5
    for step in seen:
        assert step['main'] == ['main', 'main']  # the main batch is untouched
        assert step['occ_shape'] == (OCCLUDED_BATCH + CLEAN_BATCH, 3, 2, 2)
        assert [src for src, _ in step['occ']] == ['occluded'] * 4 + ['clean']

    occluded = _indices(seen, 'occluded')
    first_pass, second_pass = occluded[0] + occluded[1], occluded[2] + occluded[3]
    assert sorted(first_pass) == sorted(second_pass) == list(range(NUM_OCCLUDED))
    assert first_pass != second_pass  # the restart used a new sampler epoch
    clean = [idx for step in _indices(seen, 'clean') for idx in step]
    assert sorted(clean[:3]) == list(range(NUM_CLEAN))  # the clean loader wrapped after 3

    # set_epoch was called at each restart: occluded passes 0, 1, 2; clean passes 0, 1
    assert hook._streams['occluded'].loader.sampler.epoch == 2
    assert hook._streams['clean'].loader.sampler.epoch == 1
    names = [type(h).__name__ for h in runner.hooks]
    assert names.index('OcclusionBatchHook') < names.index('IterTimerHook')


def test_resume_continues_each_stream_at_the_stored_epoch(first_run, tmp_path):
    work_dir, _, first = first_run
    checkpoint = load_checkpoint_file(str(work_dir / 'iter_3.pth'))
    # after 3 iterations: occluded pass 1 in progress, clean pass 0 in progress
    assert checkpoint['occlusion_batch_hook'] == dict(
        occluded=dict(next_epoch=2), clean=dict(next_epoch=1))

    hook = _hook()
    resumed = _train(tmp_path, hook, max_iters=5, resume_from=str(work_dir / 'iter_3.pth'))
    assert resumed.iter == 5 and len(resumed.model.seen) == 2
    # occluded: the resumed run starts pass 2, which the first run began at iteration 4
    assert _indices(resumed.model.seen, 'occluded')[0] == _indices(first.model.seen,
                                                                  'occluded')[4]
    assert hook._streams['occluded'].loader.sampler.epoch == 2
    # clean: pass 1 in both runs from iteration 3 on
    assert _indices(resumed.model.seen, 'clean') == _indices(first.model.seen, 'clean')[3:]


def test_built_from_config_with_its_priority():
    hook = HOOKS.build(
        dict(
            type='OcclusionBatchHook',
            _scope_=SCOPE,
            occluded_loader=dict(dataset=_Faces('occluded', 4), batch_size=32),
            clean_loader=dict(dataset=_Faces('clean', 4), batch_size=8)))
    assert isinstance(hook, OcclusionBatchHook)
    assert hook.priority == 'ABOVE_NORMAL' and hook.clean_ratio == 0.2
    assert hook.loader_cfgs['occluded']['drop_last'] is True


@pytest.mark.parametrize('occluded, clean, kwargs, words', [
    (dict(batch_size=32), dict(batch_size=6), {}, 'needs 8 clean of 38'),
    (dict(batch_size=4), dict(batch_size=1), dict(clean_ratio=0.0), 'clean_ratio'),
    (dict(batch_size=4), dict(batch_size=1, drop_last=False), {}, 'drop_last=True'),
    (dict(), dict(batch_size=1), {}, 'occluded_loader needs a positive int batch_size'),
    (dict(batch_size=4, batch_sampler=dict(type='AspectRatioBatchSampler')),
     dict(batch_size=1), {}, 'batch_sampler'),
])
def test_bad_configs_are_refused(occluded, clean, kwargs, words):
    with pytest.raises(ValueError, match=words):
        OcclusionBatchHook(
            occluded_loader=dict(dataset=_Faces('occluded', 8), **occluded),
            clean_loader=dict(dataset=_Faces('clean', 8), **clean),
            **kwargs)


_FAKE_RUNNER = SimpleNamespace(seed=0, _randomness_cfg={})


def test_occluders_in_the_clean_pipeline_are_refused():
    hook = OcclusionBatchHook(
        occluded_loader=dict(dataset=_Faces('occluded', 8), batch_size=4),
        clean_loader=dict(
            dataset=_Faces('clean', 4, pipeline=[RandomApply([MedicalMaskOcclusion()])]),
            batch_size=1))
    with pytest.raises(ValueError, match='clean loader pipeline contains the occluder '
                       'MedicalMaskOcclusion'):
        hook.before_train(_FAKE_RUNNER)


def test_a_loader_without_a_full_batch_is_refused():
    hook = OcclusionBatchHook(
        occluded_loader=dict(dataset=_Faces('occluded', 3), batch_size=4),
        clean_loader=dict(dataset=_Faces('clean', 4), batch_size=1))
    with pytest.raises(ValueError, match='occluded loader yields no batch'):
        hook.before_train(_FAKE_RUNNER)


def test_stacked_batches_are_concatenated_and_non_dict_batches_refused():
    hook = OcclusionBatchHook(
        occluded_loader=dict(
            dataset=_Stacked('occluded', 8), batch_size=4,
            collate_fn=dict(type='default_collate')),
        clean_loader=dict(
            dataset=_Stacked('clean', 2), batch_size=1, collate_fn=dict(type='default_collate')))
    hook.before_train(_FAKE_RUNNER)
    batch = dict(inputs=[], data_samples=[])
    hook.before_train_iter(_FAKE_RUNNER, 0, batch)
    assert batch['occ']['inputs'].shape == (5, 3, 2, 2)
    assert batch['occ']['data_samples'].shape == (5, )
    with pytest.raises(TypeError, match='must be a dict'):
        hook.before_train_iter(_FAKE_RUNNER, 1, [batch])


def test_checkpoint_state_round_trip_and_bad_state():
    hook = _hook()
    hook.after_load_checkpoint(_FAKE_RUNNER, dict(meta={}))  # no state: nothing changes
    checkpoint = {}
    hook.before_save_checkpoint(_FAKE_RUNNER, checkpoint)
    assert checkpoint['occlusion_batch_hook'] == dict(
        occluded=dict(next_epoch=0), clean=dict(next_epoch=0))

    hook.after_load_checkpoint(
        _FAKE_RUNNER,
        dict(occlusion_batch_hook=dict(occluded=dict(next_epoch=4), clean=dict(next_epoch=7))))
    hook.before_train(_FAKE_RUNNER)
    hook.before_train_iter(_FAKE_RUNNER, 0, dict(inputs=[], data_samples=[]))
    assert hook._streams['occluded'].loader.sampler.epoch == 4
    assert hook._streams['clean'].loader.sampler.epoch == 7
    hook.before_save_checkpoint(_FAKE_RUNNER, checkpoint)  # passes 4 and 7 are in progress
    assert checkpoint['occlusion_batch_hook'] == dict(
        occluded=dict(next_epoch=5), clean=dict(next_epoch=8))

    # loading into running streams restarts them at the loaded epochs
    hook.after_load_checkpoint(
        _FAKE_RUNNER,
        dict(occlusion_batch_hook=dict(occluded=dict(next_epoch=9), clean=dict(next_epoch=1))))
    hook.before_train_iter(_FAKE_RUNNER, 1, dict(inputs=[], data_samples=[]))
    assert hook._streams['occluded'].loader.sampler.epoch == 9
    assert hook._streams['clean'].loader.sampler.epoch == 1
    with pytest.raises(ValueError, match='next_epoch'):
        hook.after_load_checkpoint(_FAKE_RUNNER, dict(occlusion_batch_hook=dict(occluded={})))


def test_a_checkpoint_that_is_no_dict_is_refused_clearly(tmp_path):
    hook = _hook()
    with pytest.raises(TypeError, match='the loaded checkpoint is a list, not a dict'):
        hook.after_load_checkpoint(_FAKE_RUNNER, [dict(state_dict={})])
    # Through the Runner the loader names the file before the hook sees it.
    path = tmp_path / 'list.pth'
    torch.save([_Recorder().state_dict()], path)
    with pytest.raises(NotACheckpointError, match='list.pth" holds a list'):
        _train(tmp_path / 'work', _hook(), max_iters=1, resume_from=str(path))
