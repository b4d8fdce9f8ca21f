"""What the face metrics share: argument checks, per-image entries, the QAConv matcher, and the
DDP gathering with rank-0 evaluation."""
import math
from abc import abstractmethod
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.dist import (all_reduce, broadcast_object_list, gather_object, get_rank,
                           get_world_size, is_distributed, is_main_process)
from mmengine.evaluator import BaseMetric

from mmoaml.structures import EMBEDDING, FEATURE_MAP, GT_VISIBILITY, VISIBILITY, area_downsample


class BaseFaceMetric(BaseMetric):
    """Base of the face metrics: one CPU entry per image, gathered to rank 0 and scored there.

    A subclass implements :meth:`make_entry` (the dict stored for one data sample; it must hold the
    image's dataset index ``sample_idx``) and :meth:`compute_metrics` (rank 0, on the distinct
    entries sorted by ``sample_idx``), and names in :attr:`matcher_methods` what its QAConv
    matcher must provide. The ``_read_*`` methods read the model's ``predict`` fields of a data
    sample with shape checks whose errors name the metric class and the sample, and store them
    the way every face metric does: own-storage CPU copies, float16 feature maps, visibilities
    on the map grid.

    :meth:`evaluate` gathers the entries to rank 0 in rounds of ``gather_chunk`` entries per
    rank (all ranks loop equally often, so no rank holds more than one round of pickled
    entries in transit), keeps one entry per ``sample_idx`` (the sampler pads the last batch
    with repeated images), checks that they cover the data set, runs :meth:`compute_metrics`
    and broadcasts the result, or its error, to every rank: no rank is left waiting on a
    failed rank 0. Keys read ``<set>/<key>`` (see :attr:`set_name`).

    Args:
        gather_chunk (int): Entries each rank sends per gathering round. Defaults to 512
            (about 26 MB of float16 512x7x7 maps).
        collect_device (str): ``'cpu'``: gather over a gloo group (host memory and network
            only, created on first use); ``'gpu'``: over the default process group.
            Defaults to ``'cpu'``.
        prefix (str, optional): Set name of the keys. Defaults to None (use
            ``dataset_meta['name']``).
    """

    #: Methods :meth:`bind_matcher` requires of a matcher (the subclass's QAConv calls).
    matcher_methods: Tuple[str, ...] = ()

    def __init__(self,
                 gather_chunk: int = 512,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        if collect_device not in ('cpu', 'gpu'):
            raise ValueError(f"collect_device must be 'cpu' or 'gpu', got {collect_device!r}")
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.gather_chunk = self._check_int('gather_chunk', gather_chunk)
        self._matcher: Optional[nn.Module] = None
        self._cpu_group = None

    @property
    def set_name(self) -> Optional[str]:
        """The set level of the result keys: ``prefix``, else ``dataset_meta['name']``."""
        return self.prefix or (self.dataset_meta or {}).get('name')

    # ------------------------------------------------------------------ argument checks

    @staticmethod
    def _check_int(name: str, value: Any, minimum: int = 1) -> int:
        """``value`` if it is an integer ``>= minimum``, else a ValueError naming ``name``."""
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
        return value

    @staticmethod
    def check_score_types(score_types: Sequence[str], known: Sequence[str]) -> Tuple[str, ...]:
        """``score_types`` as a tuple if they are distinct names from ``known`` (at least one)."""
        score_types = tuple(score_types)
        if (not score_types or set(score_types) - set(known)
                or len(set(score_types)) != len(score_types)):
            raise ValueError(f'score_types must be distinct names from {tuple(known)}, got '
                             f'{score_types}')
        return score_types

    @staticmethod
    def _check_combine_weights(combine_weights: Sequence[float]) -> Tuple[float, float]:
        """``(w_adaface, w_qaconv)`` as floats: two non-negative numbers, not both 0."""
        weights = tuple(float(w) for w in combine_weights)
        if len(weights) != 2 or min(weights) < 0 or sum(weights) == 0:
            raise ValueError('combine_weights must be two non-negative numbers, not both 0, '
                             f'got {combine_weights}')
        return weights

    @staticmethod
    def _check_rates(name: str, rates: Sequence[float], allow_empty: bool) -> Tuple[float, ...]:
        """Operating-point targets (FAR, FPIR) as floats in ``(0, 1]``."""
        values = tuple(float(r) for r in rates)
        if (not values and not allow_empty) or not all(0 < r <= 1 for r in values):
            raise ValueError(f'{name} must hold targets in (0, 1], got {rates}')
        return values

    # ------------------------------------------------------------------ per-image entries

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store one CPU entry per image (made by :meth:`make_entry`).

        Args:
            data_batch (Any): The batch given to the model (unused: everything is read from
                the data samples).
            data_samples (Sequence[dict]): The model's outputs, one dict per image.
        """
        for sample in data_samples:
            self.results.append(self.make_entry(sample))

    @abstractmethod
    def make_entry(self, sample: dict) -> dict:
        """The entry stored for one data sample: CPU tensors and Python values only, with the
        image's ``sample_idx`` (int)."""

    def sample_index(self, sample: dict, metainfo: Sequence[str] = ()) -> int:
        """The ``sample_idx`` of a data sample, which must also carry the keys ``metainfo``."""
        required = ('sample_idx', *metainfo)
        if any(key not in sample for key in required):
            names = ' and '.join(repr(key) for key in required)
            raise KeyError(f'{type(self).__name__}: every data sample needs the metainfo '
                           f'{names}, got keys {sorted(sample)}')
        return int(sample['sample_idx'])

    def read_tensor(self, sample: dict, key: str, index: int) -> torch.Tensor:
        """The tensor ``sample[key]``; a KeyError naming the metric and sample when absent."""
        value = sample.get(key)
        if not isinstance(value, torch.Tensor):
            raise KeyError(f"{type(self).__name__}: sample {index} has no tensor '{key}' (the "
                           'model predict() output); the requested score types need it')
        return value

    def read_embedding(self, sample: dict, index: int) -> torch.Tensor:
        """The ``[D]`` embedding as a float32 CPU copy."""
        embedding = self.read_tensor(sample, EMBEDDING, index)
        if embedding.dim() != 1:
            raise ValueError(f'{type(self).__name__}: {EMBEDDING} of sample {index} must be '
                             f'[D], got {list(embedding.shape)}')
        return _own_copy(embedding, torch.float32)

    def read_feature_map(self, sample: dict, index: int) -> torch.Tensor:
        """The ``[C, h, w]`` matching map as a float16 CPU copy (half the memory of float32;
        the matcher converts each block it scores back)."""
        feature_map = self.read_tensor(sample, FEATURE_MAP, index)
        if feature_map.dim() != 3:
            raise ValueError(f'{type(self).__name__}: {FEATURE_MAP} of sample {index} must be '
                             f'[C, h, w], got {list(feature_map.shape)}')
        return _own_copy(feature_map, torch.float16)

    def read_visibility(self, sample: dict, index: int,
                         grid: Tuple[int, int]) -> Optional[torch.Tensor]:
        """The predicted visibility as a float32 ``[1, h, w]`` CPU copy on the map ``grid``
        (None when the model predicts none)."""
        vis = sample.get(VISIBILITY)
        if vis is None:
            return None
        if vis.numel() != math.prod(grid):
            raise ValueError(f'{type(self).__name__}: {VISIBILITY} of sample {index} must be '
                             f'[1, {grid[0]}, {grid[1]}] (the map grid), got {list(vis.shape)}')
        return _own_copy(vis, torch.float32).reshape(1, *grid)

    def read_gt_visibility(self, sample: dict, index: int,
                            grid: Tuple[int, int]) -> torch.Tensor:
        """The ``[1, H, W]`` pixel ground truth area-averaged to a float32 ``[1, h, w]`` on the
        map ``grid`` (only the grid-sized map is kept)."""
        gt = self.read_tensor(sample, GT_VISIBILITY, index)
        if gt.dim() != 3 or gt.shape[0] != 1:
            raise ValueError(f'{type(self).__name__}: {GT_VISIBILITY} of sample {index} must '
                             f'be [1, H, W], got {list(gt.shape)}')
        return area_downsample(gt.detach().cpu(), grid)[0]

    # ------------------------------------------------------------------ QAConv matcher

    def bind_matcher(self, matcher: nn.Module) -> None:
        """Use ``matcher`` (the model's ``QAConvHead``) for the QAConv score types.

        Args:
            matcher (nn.Module): Provides the methods named by :attr:`matcher_methods`.
        """
        if not all(callable(getattr(matcher, name, None)) for name in self.matcher_methods):
            wanted = ' and '.join(f'{name}(...)' for name in self.matcher_methods)
            raise TypeError(f'{type(self).__name__}.bind_matcher: the matcher must provide '
                            f'{wanted}, got {type(matcher).__name__}')
        self._matcher = matcher

    def bound_matcher(self, score_types: Sequence[str]) -> Tuple[nn.Module, torch.device]:
        """The bound matcher and the device of its parameters (CPU when it has none).

        Args:
            score_types (Sequence[str]): The score types that need it (named in the error).
        """
        if self._matcher is None:
            raise RuntimeError(
                f'{type(self).__name__}: score types {list(score_types)} need the QAConv '
                'matcher; call bind_matcher(model.qaconv_head) (MultiValLoop/MultiTestLoop do '
                'this for models with a qaconv_head)')
        return self._matcher, next(self._matcher.parameters(), torch.empty(0)).device

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, size: int) -> dict:
        """Gather the entries to rank 0 in chunks, compute there, broadcast the metrics.

        Args:
            size (int): Number of images of the data set; the entries, de-duplicated by
                ``sample_idx``, must cover exactly this many.

        Returns:
            dict: ``<set>/<key>`` -> Python number, on every rank.
        """
        group = self._collect_group()
        distributed = get_world_size(group) > 1
        entries = self._gather_entries(group) if distributed else self.results
        self.results = []
        payload: List[Optional[Tuple[str, Any]]] = [None]
        failure = None
        if is_main_process():
            try:
                entries = unique_by_index(entries)
                if len(entries) != size:
                    raise ValueError(f'{type(self).__name__}: collected {len(entries)} '
                                     f'distinct images, the data set has {size}')
                name = self.set_name
                metrics = self.compute_metrics(entries)
                payload = [('ok', {f'{name}/{k}' if name else k: v
                                   for k, v in metrics.items()})]
            except Exception as error:  # every rank must leave the broadcast below
                failure = error
                payload = [('error', f'{type(error).__name__}: {error}')]
        del entries
        if distributed:
            broadcast_object_list(payload, src=0, group=group)
        status, value = payload[0]
        if failure is not None:
            raise failure
        if status == 'error':
            raise RuntimeError(f'{type(self).__name__} failed on rank 0: {value}')
        return value

    def _collect_group(self) -> Optional[Any]:
        """The process group to gather over: a gloo group for ``'cpu'`` (made once, reused by
        later evaluations), the default group for ``'gpu'``, None when not distributed."""
        if not is_distributed() or self.collect_device == 'gpu':
            return None
        if self._cpu_group is None:
            self._cpu_group = torch_dist.new_group(backend='gloo')
        return self._cpu_group

    def _gather_entries(self, group: Optional[Any]) -> Optional[List[dict]]:
        """Entries of all ranks on rank 0 (None elsewhere), de-duplicated while gathering so
        that the sampler's padding never accumulates."""
        rounds = torch.tensor([math.ceil(len(self.results) / self.gather_chunk)])
        all_reduce(rounds, op='max', group=group)
        collected: Optional[Dict[int, dict]] = {} if get_rank() == 0 else None
        for start in range(0, int(rounds) * self.gather_chunk, self.gather_chunk):
            parts = gather_object(self.results[start:start + self.gather_chunk], 0, group)
            if collected is not None:
                for entry in (e for part in parts for e in part):
                    collected.setdefault(entry['sample_idx'], entry)
        return None if collected is None else list(collected.values())


def unique_by_index(entries: Sequence[dict]) -> List[dict]:
    """Entries sorted by ``sample_idx``, the first of each index kept.

    Args:
        entries (Sequence[dict]): Entries with an int ``sample_idx``, in any order, repeats
            (the sampler's padding) allowed.

    Returns:
        list[dict]: One entry per distinct ``sample_idx``, in increasing order.
    """
    unique: Dict[int, dict] = {}
    for entry in entries:
        unique.setdefault(entry['sample_idx'], entry)
    return [unique[i] for i in sorted(unique)]


def all_or_none(entries: Sequence[dict], key: str, owner: str) -> bool:
    """Whether every entry holds ``key`` (not None); False when none does.

    Args:
        entries (Sequence[dict]): Per-image entries.
        key (str): An optional field, e.g. ``'visibility'``.
        owner (str): Name of the caller for the error, e.g. the metric class.

    Returns:
        bool: True when all entries hold it, False when none does; a ValueError when only some
        do (a mix cannot be scored consistently).
    """
    present = sum(e.get(key) is not None for e in entries)
    if 0 < present < len(entries):
        raise ValueError(f"{owner}: '{key}' is given for {present} of {len(entries)} images; "
                         'provide it for all or none')
    return present > 0


def stack_field(entries: Sequence[dict], key: str, device: torch.device,
                indices: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Stack ``entries[i][key]`` on ``device``, for ``indices`` (all entries when None).

    QAConv inputs are stacked block by block with this, so no stacked copy of all maps ever
    exists besides the stored entries.

    Args:
        entries (Sequence[dict]): Per-image entries.
        key (str): The tensor field, e.g. ``'feature_map'``.
        device (torch.device): Where the stack goes (the matcher's device).
        indices (Sequence[int], optional): Which entries, in order. Defaults to None (all).

    Returns:
        torch.Tensor: ``[len(indices), *field shape]`` in the stored dtype.
    """
    chosen = entries if indices is None else [entries[i] for i in indices]
    return torch.stack([e[key] for e in chosen]).to(device)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for a block and restore its mode afterwards.

    QAConv scores must be computed in eval mode: each score then depends on its own pair only
    (train-mode BN would mix the pairs scored together), and BN statistics are not updated.

    Args:
        module (nn.Module): The matcher.
    """
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _own_copy(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A CPU copy with its own storage: a per-image view of a batch tensor would keep the whole
    batch alive and be pickled whole when the entries are gathered."""
    return tensor.detach().to('cpu', dtype, copy=True)
