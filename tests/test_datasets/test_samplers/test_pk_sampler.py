"""PKSampler: P identities x K images per batch, epochs over every image, DDP sharding."""
from unittest import mock

import numpy as np
import pytest
from mmengine.dataset import BaseDataset, ConcatDataset, RepeatDataset
from mmengine.runner import Runner

from mmoaml.datasets.samplers import PKSampler
from mmoaml.datasets.samplers.pk_sampler import check_pk_batch_size
from mmoaml.registry import DATA_SAMPLERS

SCOPE = 'mmoaml'
DIST_INFO = 'mmoaml.datasets.samplers.pk_sampler.get_dist_info'


class _Labels:
    """Labels only; loading a sample is an error (the sampler must not decode images)."""

    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, idx):
        return dict(gt_label=self.labels[idx], img_path=f'face_{idx}.jpg')

    def __getitem__(self, idx):
        raise AssertionError('PKSampler loaded a sample')


class _Loadable(_Labels):

    def __getitem__(self, idx):
        return dict(inputs=idx, label=self.labels[idx])


class _LabelFile(BaseDataset):
    """A BaseDataset with labels in its data list whose samples must never be prepared."""

    def __init__(self, labels):
        self._labels = list(labels)
        super().__init__(serialize_data=True)

    def load_data_list(self):
        return [
            dict(gt_label=label, img_path=f'face_{i}.jpg') for i, label in enumerate(self._labels)
        ]

    def prepare_data(self, idx):
        raise AssertionError('PKSampler loaded a sample')


def _labels(counts):
    """Identity ``i`` has ``counts[i]`` images; images of different identities interleaved."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(7).permutation(labels).tolist()


def _sampler(dataset, rank=0, world_size=1, **kwargs):
    kwargs.setdefault('seed', 3)
    with mock.patch(DIST_INFO, return_value=(rank, world_size)):
        return PKSampler(dataset, **kwargs)


def _batches(sampler):
    indices = list(sampler)
    assert len(indices) == len(sampler)
    return np.array(indices).reshape(-1, sampler.num_identities, sampler.num_instances)


def test_every_batch_holds_p_distinct_identities_with_k_images_each():
    counts = [1, 2, 3, 4, 5, 7, 8, 9, 12, 30]
    labels = np.array(_labels(counts))
    sampler = _sampler(_Labels(labels), num_instances=4, batch_size=12)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = _batches(sampler)
        assert len(batches) > 0
        for batch in batches:
            row_labels = labels[batch]  # [P, K]
            assert (row_labels == row_labels[:, :1]).all(), 'a row mixes identities'
            assert len(set(row_labels[:, 0])) == 3, 'identities repeat inside a batch'


def test_short_identities_are_drawn_with_replacement_others_without():
    counts = [2, 6, 4, 5]
    labels = np.array(_labels(counts))
    images = {i: set(np.flatnonzero(labels == i)) for i in range(len(counts))}
    sampler = _sampler(_Labels(labels), num_instances=4, batch_size=8)
    seen = {i: set() for i in images}
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            for row in batch:
                identity = int(labels[row[0]])
                seen[identity].update(row.tolist())
                if identity == 0:  # 2 images for K = 4: both present, repeated
                    assert set(row.tolist()) == images[0]
                else:
                    assert len(set(row.tolist())) == 4, f'identity {identity} repeats an image'
    assert seen == images


def test_an_epoch_shows_every_image():
    counts = [4, 8, 4, 12, 8, 4, 4, 4]  # 12 slots of K=4, 6 batches of 2 identities
    labels = _labels(counts)
    sampler = _sampler(_Labels(labels), num_instances=4, batch_size=8)
    assert len(sampler) == len(labels) == 48
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert sorted(indices) == list(range(len(labels)))


@pytest.mark.parametrize('counts, batch_size, batches', [
    # slots ceil(n/4) = [2, 1, 1, 2, 1, 1] = 8; 2 identities per batch -> 4 batches
    ([5, 4, 2, 8, 1, 4], 8, 4),
    # slots [10, 1, 1, 1]: identity 0 fits once per batch, so 3 batches, not floor(13 / 2)
    ([40, 4, 4, 4], 8, 3),
    # 3 identities per batch, slots [1] * 7 -> 2 batches, one slot left over
    ([4] * 7, 12, 2),
])
def test_length_is_the_most_full_batches_the_slots_allow(counts, batch_size, batches):
    labels = np.array(_labels(counts))
    sampler = _sampler(_Labels(labels), num_instances=4, batch_size=batch_size)
    assert sampler.batches_per_epoch == batches
    assert len(sampler) == batches * batch_size
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            assert len(set(labels[batch[:, 0]])) == batch_size // 4


def test_without_shuffle_the_plan_is_fixed_in_label_and_index_order():
    labels = np.repeat(np.arange(6), 4).tolist()  # one slot per identity, all keys equal
    sampler = _sampler(_Labels(labels), num_instances=4, batch_size=8, shuffle=False)
    assert list(sampler) == list(range(24))
    sampler.set_epoch(5)
    assert list(sampler) == list(range(24))


def test_same_seed_and_epoch_give_the_same_order_others_differ():
    dataset = _Labels(_labels([5, 9, 4, 6, 7, 4, 3, 8]))
    first, again = (_sampler(dataset, batch_size=8, seed=11) for _ in range(2))
    first.set_epoch(2)
    again.set_epoch(2)
    assert list(first) == list(again)
    again.set_epoch(3)
    assert list(first) != list(again)
    other_seed = _sampler(dataset, batch_size=8, seed=12)
    other_seed.set_epoch(2)
    assert list(first) != list(other_seed)


def test_seed_none_takes_the_synchronised_seed():
    dataset = _Labels(_labels([4] * 4))
    with mock.patch('mmoaml.datasets.samplers.pk_sampler.sync_random_seed', return_value=1234):
        sampler = _sampler(dataset, batch_size=8, seed=None)
    assert sampler.seed == 1234
    assert list(sampler) == list(_sampler(dataset, batch_size=8, seed=1234))


@pytest.mark.parametrize('world_size', [1, 2, 4])
def test_ranks_get_disjoint_whole_batches_of_one_global_plan(world_size):
    # 16 identities x 8 images: 32 slots, no filler, 16 batches of 2 identities x 4 images.
    labels = _labels([8] * 16)
    dataset = _Labels(labels)
    single = _sampler(dataset, batch_size=8)
    single.set_epoch(1)
    plan = _batches(single)
    shards = []
    for rank in range(world_size):
        sampler = _sampler(dataset, rank=rank, world_size=world_size, batch_size=8)
        sampler.set_epoch(1)
        shards.append(_batches(sampler))
    lengths = {len(shard) for shard in shards}
    assert lengths == {16 // world_size}
    # rank r holds global batches r, r + W, ...: interleaving the shards rebuilds the plan
    interleaved = np.stack(shards, axis=1).reshape(plan.shape)
    np.testing.assert_array_equal(interleaved, plan)
    flat = [set(shard.reshape(-1).tolist()) for shard in shards]
    assert sum(map(len, flat)) == len(labels)
    assert set().union(*flat) == set(range(len(labels)))


@pytest.mark.parametrize('round_up, per_rank', [(True, 6), (False, 5)])
def test_uneven_shards_are_padded_or_cut_to_equal_length(round_up, per_rank):
    labels = _labels([8] * 16)  # 16 global batches over 3 ranks
    dataset = _Labels(labels)
    plan = _batches(_sampler(dataset, batch_size=8))
    shards = [
        _batches(_sampler(dataset, rank=r, world_size=3, batch_size=8, round_up=round_up))
        for r in range(3)
    ]
    assert [len(shard) for shard in shards] == [per_rank] * 3
    for rank, shard in enumerate(shards):
        for j, batch in enumerate(shard):
            np.testing.assert_array_equal(batch, plan[(j * 3 + rank) % len(plan)])


def test_labels_come_from_data_infos_through_dataset_wrappers():
    repeated = RepeatDataset(_LabelFile([0, 0, 1, 1, 2, 2]), times=2)
    sampler = _sampler(repeated, num_instances=2, batch_size=4)
    assert sampler.batches_per_epoch == 3  # each identity has 4 entries -> 2 slots of K=2
    labels = np.array([0, 0, 1, 1, 2, 2] * 2)
    for batch in _batches(sampler):
        assert (labels[batch] == labels[batch[:, :1]]).all()
        assert len(set(labels[batch[:, 0]])) == 2

    concat = ConcatDataset([_LabelFile([0, 0, 1, 1]), _LabelFile([2, 2, 3, 3])])
    sampler = _sampler(concat, num_instances=2, batch_size=4)
    assert sorted(sampler) == list(range(8))


@pytest.mark.parametrize('kwargs, dataset, error, words', [
    (dict(), _Labels([0] * 8), ValueError, 'batch_size is required'),
    (dict(batch_size=10), _Labels([0] * 8), ValueError, 'multiple of num_instances=4'),
    (dict(batch_size=8, num_instances=0), _Labels([0] * 8), ValueError, 'num_instances'),
    (dict(batch_size=16), _Labels([0, 1, 2] * 4), ValueError, 'only 3'),
    (dict(batch_size=8), [0, 1], TypeError, 'get_data_info'),
    (dict(batch_size=8), _Labels([]), ValueError, 'empty'),
    (dict(batch_size=8), _Labels([0, 1, 'x']), TypeError, 'sample 2'),
    (dict(batch_size=8, seed=1.5), _Labels([0, 1]), TypeError, 'seed'),
])
def test_bad_arguments_are_refused_clearly(kwargs, dataset, error, words):
    with pytest.raises(error, match=words):
        _sampler(dataset, **kwargs)


def test_missing_label_is_named():

    class NoLabel(_Labels):

        def get_data_info(self, idx):
            return dict(img_path=f'face_{idx}.jpg')

    with pytest.raises(KeyError, match=r'get_data_info\(0\) of NoLabel has no gt_label'):
        _sampler(NoLabel([0, 1]), batch_size=8)


def test_more_ranks_than_batches_without_round_up_is_refused():
    with pytest.raises(ValueError, match='fewer than the 4 ranks'):
        _sampler(_Labels(_labels([4] * 6)), world_size=4, batch_size=8, round_up=False)


def test_built_from_config_by_the_runner_dataloader():
    labels = _labels([4, 6, 8, 3, 5, 4, 9, 4])
    loader = Runner.build_dataloader(
        dict(
            batch_size=8,
            num_workers=0,
            dataset=_Loadable(labels),
            sampler=dict(type='PKSampler', _scope_=SCOPE, num_instances=4, batch_size=8)),
        seed=5)
    assert isinstance(loader.sampler, PKSampler) and loader.sampler.seed == 5
    assert DATA_SAMPLERS.get('PKSampler') is PKSampler
    batches = list(loader)
    assert len(batches) == len(loader.sampler) // 8
    for batch in batches:
        batch_labels = np.array(batch['label']).reshape(2, 4)
        assert (batch_labels == batch_labels[:, :1]).all()
        assert batch_labels[0, 0] != batch_labels[1, 0]


def test_one_identity_per_batch_is_refused_naming_both_keys():
    # K = batch size: no negatives in any batch (triplet loss 0, QAConv accuracy NaN all run).
    with pytest.raises(ValueError, match='batch_size=4 equals num_instances=4') as info:
        _sampler(_Labels(_labels([4] * 4)), num_instances=4, batch_size=4)
    message = str(info.value)
    assert 'train_dataloader.sampler.batch_size' in message
    assert 'train_dataloader.sampler.num_instances' in message


def test_loader_and_sampler_batch_sizes_must_agree():
    loader = dict(batch_size=128, sampler=dict(type='PKSampler', num_instances=4,
                                               batch_size=256))
    with pytest.raises(ValueError, match=r'train_dataloader.batch_size=128 differs from '
                       r'train_dataloader.sampler.batch_size=256'):
        check_pk_batch_size(loader)
    check_pk_batch_size(dict(loader, batch_size=256))
    check_pk_batch_size(dict(batch_size=8, sampler=dict(type='DefaultSampler')))  # not PK
    check_pk_batch_size(None)  # no training loader
