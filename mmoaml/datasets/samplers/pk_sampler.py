"""PK sampling: batches of P identities x K images each, planned globally and sharded by batch."""
import math
import operator
from collections import OrderedDict, deque
from typing import Deque, Iterator, List, Optional, Sized

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmoaml.registry import DATA_SAMPLERS

__all__ = ['PKSampler', 'check_pk_batch_size']


@DATA_SAMPLERS.register_module()
class PKSampler(Sampler):
    """Index sampler whose every batch holds P distinct identities with K images each.

    The metric-learning losses (QAConv pairwise matching, batch-hard triplet) need positives
    and negatives inside every batch; this is the PK sampling of the OAML report (section 3.4)
    and of QAConv's ``RandomIdentitySampler``, with K = ``num_instances``.

    **What an epoch is.** Each identity with ``n`` images is cut into ``ceil(n / K)`` slots of
    K images: its shuffled images in order, the last, short slot completed with other images of
    the same identity drawn without replacement. An identity with fewer than K images gets one
    slot holding all its images plus ``K - n`` drawn with replacement. So an epoch shows every
    image at least once, about ``len(dataset)`` samples, and an epoch-based schedule (28 epochs
    on CASIA-WebFace) means what it says. This deliberately differs from QAConv's
    ``RandomIdentitySampler`` (one slot per identity, ``#ids * K`` samples; 8.6 % of CASIA per
    "epoch", docs/reference.md#predecessor-pitfalls-avoided).

    **Batch plan.** The slots of one identity are spread evenly over the epoch (slot ``k`` of
    ``c`` gets the random sort key ``(k + u) / c``, ``u ~ U[0, 1)``), all slots are sorted by key
    and packed in that order into batches of P slots of distinct identities; a slot whose
    identity is already in the batch being packed waits for the next batch. The number of
    batches per epoch is fixed in advance: the most batches of P distinct identities the slot
    counts allow, ``R = max{r : sum_i min(c_i, r) >= P r}`` (equal to ``floor(#slots / P)``
    unless one identity has more slots than there are batches). If packing ends short of ``R``
    (a few slots left over at the end of the epoch), the first batches of the plan are repeated.
    Leftover slots are dropped; which ones changes with the epoch.

    **Distributed training.** Every rank computes the same global plan (the seed is shared,
    ``sync_random_seed`` when ``seed`` is None, and the plan depends only on seed and epoch) and
    rank ``r`` of ``W`` takes whole global batches ``r, r + W, r + 2W, ...``. Every rank gets
    the same number of batches: ``ceil(R / W)`` with ``round_up=True`` (the plan is extended by
    repeating its first batches), ``floor(R / W)`` otherwise (the tail is dropped). So
    ``len(sampler)`` is identical on all ranks, a multiple of ``batch_size``, and no rank waits
    for another at the end of an epoch.

    Labels come from ``dataset.get_data_info(i)['gt_label']``: no image is decoded. MMEngine's
    dataset wrappers (``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``) forward
    ``get_data_info`` and work as they are. ``gt_label`` is taken as the identity, i.e. labels
    live in the classifier's label space: datasets concatenated for training must already use
    disjoint label ranges for different people, as the classification head requires anyway.

    Args:
        dataset (Sized): Dataset with ``__len__`` and ``get_data_info(i)`` returning a dict with
            an integer ``gt_label``.
        num_instances (int): K, images per identity in a batch. Defaults to 4 (OAML report
            section 3.4; QAConv 2.0 README results).
        batch_size (int): Per-rank batch size, the same value as the DataLoader's
            ``batch_size``; a multiple of ``num_instances``, at least twice it (P >= 2). The
            sampler cannot read it from the DataLoader (MMEngine builds the sampler first), so
            it must be given, e.g. ``sampler=dict(type='PKSampler', batch_size=batch_size)``
            next to ``batch_size=batch_size`` in the dataloader config;
            :func:`check_pk_batch_size` compares the two in a config.
        shuffle (bool): Draw a new random plan every epoch. If False, the plan is fixed:
            identities in label order, images in index order, short slots completed cyclically.
            Defaults to True.
        seed (int, optional): Seed of the plan, combined with the epoch; must be the same on
            every rank. None: a seed drawn on rank 0 and broadcast (``sync_random_seed``).
            Defaults to None.
        round_up (bool): Pad the per-rank share up to equal length by repeating batches (True)
            or drop the batches that do not divide evenly among ranks (False). Defaults to True.

    Examples:
        >>> train_dataloader = dict(
        ...     batch_size=256,
        ...     sampler=dict(type='PKSampler', num_instances=4, batch_size=256),
        ...     dataset=dict(type='FaceFolderDataset', data_root='data/casia'))
    """

    def __init__(self,
                 dataset: Sized,
                 num_instances: int = 4,
                 batch_size: Optional[int] = None,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        if not isinstance(num_instances, int) or num_instances < 1:
            raise ValueError(f'PKSampler: num_instances must be a positive int, '
                             f'got {num_instances!r}')
        if batch_size is None:
            raise ValueError('PKSampler: batch_size is required: set it to the per-rank batch '
                             "size of the DataLoader (e.g. sampler=dict(type='PKSampler', "
                             'batch_size=256) with batch_size=256 in the dataloader config)')
        if (not isinstance(batch_size, int) or batch_size < num_instances
                or batch_size % num_instances):
            raise ValueError(f'PKSampler: batch_size={batch_size!r} must be a positive multiple '
                             f'of num_instances={num_instances} (P identities x K images)')
        if batch_size == num_instances:
            # One identity per batch has no negatives: the triplet loss is 0 and QAConv's
            # batch-hard accuracy NaN for the whole run.
            raise ValueError(
                f'PKSampler: batch_size={batch_size} equals num_instances={num_instances}, so '
                'every batch holds a single identity (no negatives for the metric losses); set '
                'train_dataloader.sampler.batch_size to at least 2 x '
                'train_dataloader.sampler.num_instances')
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f'PKSampler: seed must be an int or None, got {seed!r}')

        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.num_identities = batch_size // num_instances
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.round_up = round_up
        self.epoch = 0

        self._groups = _identity_groups(dataset)
        if len(self._groups) < self.num_identities:
            raise ValueError(
                f'PKSampler: batch_size={batch_size} with num_instances={num_instances} needs '
                f'{self.num_identities} identities per batch, but {type(dataset).__name__} has '
                f'only {len(self._groups)}; lower batch_size or raise num_instances')
        slot_counts = np.array([math.ceil(len(g) / num_instances) for g in self._groups])
        self.batches_per_epoch = _max_batches(slot_counts, self.num_identities)
        if round_up:
            self._rank_batches = math.ceil(self.batches_per_epoch / self.world_size)
        else:
            self._rank_batches = self.batches_per_epoch // self.world_size
        if self._rank_batches == 0:
            raise ValueError(
                f'PKSampler: {type(dataset).__name__} yields {self.batches_per_epoch} batches '
                f'of {batch_size} per epoch, fewer than the {self.world_size} ranks; use '
                'round_up=True or a smaller batch_size')

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's indices for the current epoch, batch after batch, K per identity."""
        plan = self._global_plan()
        total = self._rank_batches * self.world_size
        repeats = math.ceil(total / len(plan))
        plan = np.concatenate([plan] * repeats)[:total]
        return iter(plan[self.rank::self.world_size].reshape(-1).tolist())

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch (the same on every rank)."""
        return self._rank_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Select the plan of ``epoch`` (called by ``DistSamplerSeedHook`` before each epoch)."""
        self.epoch = epoch

    def _global_plan(self) -> np.ndarray:
        """The epoch's batches as an int64 array ``[R, P, K]`` of dataset indices."""
        rng = (np.random.default_rng([self.seed % 2**64, self.epoch])
               if self.shuffle else None)
        slots, owners, keys = [], [], []
        for identity, indices in enumerate(self._groups):
            identity_slots = _identity_slots(indices, self.num_instances, rng)
            count = len(identity_slots)
            offsets = rng.random(count) if rng is not None else np.full(count, 0.5)
            slots.append(identity_slots)
            owners.append(np.full(count, identity))
            keys.append((np.arange(count) + offsets) / count)
        order = np.argsort(np.concatenate(keys), kind='stable')
        slots_in_order = np.concatenate(slots)[order]
        batches = _pack_distinct(
            np.concatenate(owners)[order], self.num_identities, self.batches_per_epoch)
        plan = slots_in_order[np.array(batches)]
        missing = self.batches_per_epoch - len(plan)
        if missing:
            plan = np.concatenate([plan, np.resize(plan, (missing, ) + plan.shape[1:])])
        return plan


def check_pk_batch_size(loader_cfg: Optional[dict], name: str = 'train_dataloader') -> None:
    """Refuse a PKSampler whose ``batch_size`` differs from its DataLoader's.

    The sampler plans batches of its own ``batch_size``; the DataLoader cuts its index stream
    into batches of the loader's, so a difference silently mixes or splits identities. Does
    nothing for a missing loader or another sampler.

    Args:
        loader_cfg (dict, optional): A DataLoader config (``batch_size``, ``sampler``).
        name (str): Its config key, for the message. Defaults to ``'train_dataloader'``.

    Raises:
        ValueError: The two batch sizes differ (both config keys named).
    """
    sampler = (loader_cfg or {}).get('sampler')
    if not isinstance(sampler, dict) or sampler.get('type') not in ('PKSampler',
                                                                    'mmoaml.PKSampler'):
        return
    loader_size, sampler_size = loader_cfg.get('batch_size'), sampler.get('batch_size')
    if loader_size != sampler_size:
        raise ValueError(
            f'{name}.batch_size={loader_size!r} differs from {name}.sampler.batch_size='
            f'{sampler_size!r}: PKSampler plans batches of its own batch_size, so both must be '
            'the same per-rank batch size (override both, e.g. --cfg-options '
            f'{name}.batch_size=128 {name}.sampler.batch_size=128)')


def _identity_groups(dataset: Sized) -> List[np.ndarray]:
    """Dataset indices grouped by ``gt_label`` (groups in label order, indices ascending)."""
    name = type(dataset).__name__
    if not callable(getattr(dataset, 'get_data_info', None)):
        raise TypeError(f'PKSampler: {name} has no get_data_info(index); PKSampler reads '
                        "identity labels from get_data_info(i)['gt_label']")
    labels = np.empty(len(dataset), dtype=np.int64)
    if len(labels) == 0:
        raise ValueError(f'PKSampler: {name} is empty')
    for i in range(len(labels)):
        info = dataset.get_data_info(i)
        if 'gt_label' not in info:
            raise KeyError(f'PKSampler: get_data_info({i}) of {name} has no gt_label; '
                           'PKSampler needs the identity label of every sample')
        try:
            labels[i] = operator.index(info['gt_label'])
        except TypeError:
            raise TypeError(f'PKSampler: gt_label of sample {i} of {name} must be an integer '
                            f'identity, got {info["gt_label"]!r}') from None
    order = np.argsort(labels, kind='stable')
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def _identity_slots(indices: np.ndarray, k: int,
                    rng: Optional[np.random.Generator]) -> np.ndarray:
    """Cut one identity's images into ``ceil(n / k)`` slots ``[c, k]`` covering every image.

    Without ``rng`` (no shuffling) images stay in order and fillers are taken cyclically from the
    start.
    """
    n = len(indices)
    if rng is not None:
        indices = rng.permutation(indices)
    if n < k:
        fill = rng.choice(indices, k - n) if rng is not None else np.resize(indices, k - n)
        return np.concatenate([indices, fill])[None]
    short = n % k
    if short:
        # Complete the last slot from the other slots' images, so no image repeats inside it.
        others = indices[:n - short]
        fill = (rng.choice(others, k - short, replace=False)
                if rng is not None else others[:k - short])
        indices = np.concatenate([indices, fill])
    return indices.reshape(-1, k)


def _max_batches(slot_counts: np.ndarray, per_batch: int) -> int:
    """Most batches of ``per_batch`` distinct identities that the slot counts allow.

    An identity fills at most one place per batch, so ``r`` batches need
    ``sum_i min(c_i, r) >= per_batch * r``; the condition also suffices, and it holds for
    ``r`` up to a largest value, found by bisection.
    """
    low, high = 0, int(slot_counts.sum()) // per_batch
    while low < high:
        mid = (low + high + 1) // 2
        if np.minimum(slot_counts, mid).sum() >= per_batch * mid:
            low = mid
        else:
            high = mid - 1
    return low


def _pack_distinct(owners: np.ndarray, per_batch: int, max_batches: int) -> List[List[int]]:
    """Pack stream positions into batches of ``per_batch`` positions with distinct owners.

    Positions are taken in stream order; one whose owner is already in the batch is deferred,
    and deferred positions (one per owner, oldest first) open the next batch. Packing stops
    after ``max_batches`` batches or when the stream runs out; what is left is dropped.
    """
    batches: List[List[int]] = []
    deferred: 'OrderedDict[int, Deque[int]]' = OrderedDict()
    stream = iter(range(len(owners)))
    while len(batches) < max_batches:
        batch: List[int] = []
        members = set()
        for owner in list(deferred)[:per_batch]:
            queue = deferred[owner]
            batch.append(queue.popleft())
            members.add(owner)
            if not queue:
                del deferred[owner]
        while len(batch) < per_batch:
            position = next(stream, None)
            if position is None:
                return batches
            owner = int(owners[position])
            if owner in members:
                deferred.setdefault(owner, deque()).append(position)
            else:
                batch.append(position)
                members.add(owner)
        batches.append(batch)
    return batches
