"""The occlusion stream: an occluded + clean face batch added to every training batch."""
import copy
import math
from typing import Dict, Optional, Union

import torch
from mmengine.hooks import Hook
from torch.utils.data import DataLoader

from mmoaml.datasets.transforms import BaseOccluder
from mmoaml.registry import HOOKS
from mmoaml.structures import OCC_KEY
from ..seeded_loaders import build_seeded_dataloader

#: Checkpoint key of the stream state.
STATE_KEY = 'occlusion_batch_hook'
_STREAMS = ('occluded', 'clean')


@HOOKS.register_module()
class OcclusionBatchHook(Hook):
    """Add an occlusion batch of occluded and clean faces to every training batch.

    The occlusion head learns from faces whose visibility is known (OAML report sections 3.2
    and 4.3): mostly real occluded faces with ground-truth masks, plus a share of clean faces,
    without which the head learns to predict occlusion everywhere. Before every training
    iteration this hook draws one batch from each of its two loaders and writes, in place,

    ``data_batch['occ'] = dict(inputs=occluded + clean, data_samples=occluded + clean)``

    (lists for the default ``pseudo_collate``, concatenated tensors for a stacking collate; the
    occluded samples come first). ``FaceDataPreprocessor`` hands it to the model as
    ``occ_inputs`` / ``occ_data_samples``. The main batch is left as it is.

    **Mix.** Each loader config carries its own per-rank ``batch_size``; ``clean_ratio`` states
    the intended clean share and the hook refuses batch sizes that do not give it:
    ``clean = round(clean_ratio * (occluded + clean))``, e.g. 32 + 8 for 0.2 (the predecessor's
    32 + 6 was 84/16 instead of 80/20, docs/reference.md#predecessor-pitfalls-avoided).
    ``drop_last`` is set
    to True (refused if False) so every occlusion batch has that exact mix.

    **Clean faces** must not be occluded: the clean loader's pipeline is the user's (typically
    ``FaceAugmenter`` then ``PackFaceInputs``, which packs the template face region as
    ``gt_visibility``) and the hook refuses one containing an mmoaml occluder
    (``BaseOccluder``). The occluded loader's pipeline must produce ``visibility_mask``.

    **Streams.** Both loaders are built in ``before_train`` with ``Runner.build_dataloader``
    (under the current default scope, seeded like the Runner's own loaders; a missing
    ``sampler`` defaults to ``DefaultSampler``, which shards by rank under DDP, so every rank
    draws its own part of each stream) and cycled for ever, independently of the main loader's
    epochs. The hook calls ``sampler.set_epoch(n)`` whenever it restarts a loader
    (``DistSamplerSeedHook`` only touches the main loader), so each pass over a stream is a new
    permutation. With
    ``num_workers > 0`` ``persistent_workers`` defaults to True, since the loaders are
    re-iterated at every pass.

    **Resume.** The checkpoint stores, per stream, the epoch that comes next
    (``checkpoint['occlusion_batch_hook']``). A resumed run starts each stream at that fresh
    epoch: the remainder of the pass that was in progress is skipped, nothing is replayed; the
    exact position inside a pass is not restored.

    Args:
        occluded_loader (dict): DataLoader config of the occluded faces with ground-truth masks:
            ``dataset``, ``batch_size`` and optionally ``sampler``, ``num_workers``, ... as for
            ``train_dataloader``.
        clean_loader (dict): DataLoader config of the clean faces (no occluder in the pipeline).
        clean_ratio (float): Share of clean faces in the occlusion batch, in (0, 1). Defaults to
            0.2 (80 % occluded / 20 % clean, OAML report section 4.3).
        priority (int | str): Hook priority. Defaults to ``'ABOVE_NORMAL'``, before
            ``IterTimerHook``, so that the extra fetch counts as data time.

    Examples:
        >>> custom_hooks = [
        ...     dict(type='OcclusionBatchHook', clean_ratio=0.2,
        ...          occluded_loader=dict(batch_size=32, num_workers=4,
        ...                               dataset=dict(type='OccludedFaceDataset',
        ...                                            data_root='data/occluded_faces')),
        ...          clean_loader=dict(batch_size=8, num_workers=2,
        ...                            dataset=dict(type='FaceFolderDataset',
        ...                                         data_root='data/casia_webface_imgs')))]
    """

    def __init__(self,
                 occluded_loader: dict,
                 clean_loader: dict,
                 clean_ratio: float = 0.2,
                 priority: Union[int, str] = 'ABOVE_NORMAL') -> None:
        if not 0 < clean_ratio < 1:
            raise ValueError(f'OcclusionBatchHook: clean_ratio must be in (0, 1), '
                             f'got {clean_ratio!r}')
        self.priority = priority
        self.clean_ratio = clean_ratio
        self.loader_cfgs = dict(
            occluded=_loader_cfg(occluded_loader, 'occluded_loader'),
            clean=_loader_cfg(clean_loader, 'clean_loader'))
        occluded_size = self.loader_cfgs['occluded']['batch_size']
        clean_size = self.loader_cfgs['clean']['batch_size']
        total = occluded_size + clean_size
        expected = math.floor(clean_ratio * total + 0.5)
        if clean_size != expected:
            raise ValueError(
                f'OcclusionBatchHook: batch sizes {occluded_size} occluded + {clean_size} clean '
                f'give a clean share of {clean_size / total:.3f}, but clean_ratio={clean_ratio} '
                f'needs {expected} clean of {total} (e.g. 32 + 8 for 0.2)')
        self._streams: Dict[str, _Cycle] = {}
        self._start_epochs = dict.fromkeys(_STREAMS, 0)

    def before_train(self, runner) -> None:
        """Build both loaders (per rank, seeded like the main loader)."""
        for name in _STREAMS:
            loader = build_seeded_dataloader(runner, self.loader_cfgs[name])
            if len(loader) == 0:
                raise ValueError(
                    f'OcclusionBatchHook: the {name} loader yields no batch: this rank draws '
                    f'{len(loader.sampler)} of the dataset\'s {len(loader.dataset)} images per '
                    f'pass, fewer than batch_size={loader.batch_size} (drop_last=True)')
            self._streams[name] = _Cycle(loader, self._start_epochs[name])
        occluder = _find_occluder(self._streams['clean'].loader.dataset)
        if occluder is not None:
            raise ValueError(f'OcclusionBatchHook: the clean loader pipeline contains the '
                             f'occluder {type(occluder).__name__}; clean faces must stay '
                             'unoccluded (their visibility is the face region)')

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        """Add ``data_batch['occ']`` in place (the loop passes this very dict to the model)."""
        if not isinstance(data_batch, dict):
            raise TypeError('OcclusionBatchHook: the training batch must be a dict to carry '
                            f"the 'occ' entry, got {type(data_batch).__name__}")
        batches = {name: self._streams[name].next_batch() for name in _STREAMS}
        data_batch[OCC_KEY] = {
            key: _concat(key, batches['occluded'], batches['clean'])
            for key in ('inputs', 'data_samples')
        }

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the epoch each stream continues with."""
        checkpoint[STATE_KEY] = {
            name: dict(next_epoch=self._streams[name].next_epoch
                       if name in self._streams else self._start_epochs[name])
            for name in _STREAMS
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Continue each stream at the stored epoch (checkpoints without the state: no-op)."""
        if not isinstance(checkpoint, dict):
            # MMEngine calls this before it reads the weights; loaders that do not check what
            # a file holds (other schemes than mmoaml's) hand anything on.
            raise TypeError(f'OcclusionBatchHook: the loaded checkpoint is a '
                            f'{type(checkpoint).__name__}, not a dict with "state_dict"; is the '
                            'load_from / resume file a checkpoint?')
        state = checkpoint.get(STATE_KEY)
        if state is None:
            return
        for name in _STREAMS:
            epoch = state.get(name, {}).get('next_epoch') if isinstance(state, dict) else None
            if not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"OcclusionBatchHook: checkpoint['{STATE_KEY}'] must hold "
                                 f"{{'{name}': {{'next_epoch': int >= 0}}}} for every stream, "
                                 f'got {state!r}')
            self._start_epochs[name] = epoch
            if name in self._streams:
                self._streams[name].restart_at(epoch)


class _Cycle:
    """Endless batches from a DataLoader, one sampler epoch per pass."""

    def __init__(self, loader: DataLoader, epoch: int) -> None:
        self.loader = loader
        self.epoch = epoch
        self._iterator = None

    @property
    def next_epoch(self) -> int:
        """The epoch a resumed stream starts with: the one after the pass in progress."""
        return self.epoch if self._iterator is None else self.epoch + 1

    def restart_at(self, epoch: int) -> None:
        self.epoch = epoch
        self._iterator = None

    def next_batch(self):
        if self._iterator is None:
            self._start()
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._start()
            return next(self._iterator)

    def _start(self) -> None:
        for sampler in (self.loader.sampler, getattr(self.loader.batch_sampler, 'sampler', None)):
            if callable(getattr(sampler, 'set_epoch', None)):
                sampler.set_epoch(self.epoch)
                break
        self._iterator = iter(self.loader)


def _loader_cfg(cfg: dict, name: str) -> dict:
    """Copy a loader config with the hook's defaults and check what the mix relies on."""
    if not isinstance(cfg, dict) or 'dataset' not in cfg:
        raise TypeError(f'OcclusionBatchHook: {name} must be a DataLoader config dict with a '
                        f'dataset, got {cfg!r}')
    cfg = copy.deepcopy(cfg)
    size = cfg.get('batch_size')
    if not isinstance(size, int) or size < 1:
        raise ValueError(f'OcclusionBatchHook: {name} needs a positive int batch_size (per '
                         f'rank), got {size!r}')
    if 'batch_sampler' in cfg:
        raise ValueError(f'OcclusionBatchHook: {name} must not set batch_sampler; the mix '
                         'relies on batch_size and drop_last')
    if cfg.setdefault('drop_last', True) is not True:
        raise ValueError(f'OcclusionBatchHook: {name} needs drop_last=True so that every '
                         'occlusion batch has the configured mix')
    cfg.setdefault('sampler', dict(type='DefaultSampler', shuffle=True))
    if cfg.get('num_workers', 0) > 0:
        cfg.setdefault('persistent_workers', True)
    return cfg


def _find_occluder(obj, depth: int = 0) -> Optional[BaseOccluder]:
    """The first ``BaseOccluder`` in a dataset's pipeline, through wrappers and nesting."""
    if isinstance(obj, BaseOccluder):
        return obj
    if depth > 8:  # pipelines nest a few levels; the bound stops on reference cycles
        return None
    children = []
    for attr in ('datasets', 'dataset', 'pipeline', 'transforms'):
        child = getattr(obj, attr, None)
        if isinstance(child, (list, tuple)):
            children.extend(child)
        elif child is not None:
            children.append(child)
    for child in children:
        found = _find_occluder(child, depth + 1)
        if found is not None:
            return found
    return None


def _concat(key: str, occluded: dict, clean: dict):
    """Join one field of the occluded and the clean batch, occluded first."""
    for name, batch in (('occluded', occluded), ('clean', clean)):
        if not isinstance(batch, dict) or key not in batch:
            raise KeyError(f"OcclusionBatchHook: each {name} batch must be a dict with '{key}' "
                           '(PackFaceInputs output collated by pseudo_collate)')
    first, second = occluded[key], clean[key]
    if isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor):
        return torch.cat([first, second])
    if isinstance(first, list) and isinstance(second, list):
        return first + second
    raise TypeError(f"OcclusionBatchHook: cannot join '{key}' of the occluded "
                    f'({type(first).__name__}) and clean ({type(second).__name__}) batches; '
                    'give both loaders the same collate_fn')
