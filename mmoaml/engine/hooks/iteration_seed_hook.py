"""Random state derived from (seed, iteration): a resumed run draws what an unbroken one would."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmoaml.registry import HOOKS


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Re-seed Python's, NumPy's and torch's global generators at every training iteration.

    MMEngine seeds the global generators once, when the Runner starts, and does not store
    their state in checkpoints. A resumed run therefore draws different dropout masks (torch)
    and different augmentations of in-process pipelines (NumPy, ``num_workers=0``) than the
    uninterrupted run would have drawn from the same point, and ends with different weights.
    Storing the generator states would not be enough either: validation runs after the
    checkpoint is written and draws from them too.

    This hook makes the state a function of the position instead: right before the data of
    training iteration ``i`` is fetched (``after_train_iter`` of iteration ``i - 1``, and
    ``before_train_epoch``, which comes after validation and before the epoch's loader
    iterator is created) it seeds the three generators from ``(runner.seed, i)``. Everything
    drawn between two such points (batch fetch, occlusion stream, forward pass) is then the
    same in an uninterrupted run and in one resumed from a checkpoint at an epoch boundary.
    ``runner.seed`` is the resumed run's stored seed; it already differs per rank when
    ``randomness.diff_rank_seed`` is set, as MMEngine's own seeding does.

    Scope: exact for epoch-based training whose random draws happen in the main process (the
    sampler, the main-process pipeline, dropout). Dataloader *worker* processes keep MMEngine's
    seeding (``seed + worker_id + rank * num_workers`` whenever workers start); with
    ``persistent_workers`` a resumed run restarts their augmentation streams, so it matches an
    uninterrupted run in distribution, not bit for bit. ``IterBasedTrainLoop`` fetches the
    skipped batches again on resume before any hook runs, so there the first batch after a
    resume is augmented differently.

    Args:
        priority (int | str): Defaults to ``'LOWEST'``: after every other hook of the same
            stage, so nothing draws between the re-seed and the fetch.

    Examples:
        >>> custom_hooks = [dict(type='IterationSeedHook')]
    """

    def __init__(self, priority='LOWEST') -> None:
        self.priority = priority

    def before_train_epoch(self, runner) -> None:
        """Seed for the epoch's first iteration (its loader iterator draws a base seed)."""
        self._reseed(runner.seed, runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Seed for the next iteration (``runner.iter`` still counts the one that ended)."""
        self._reseed(runner.seed, runner.iter + 1)

    @staticmethod
    def _reseed(seed: int, iteration: int) -> None:
        words = np.random.SeedSequence([seed % 2**63, iteration]).generate_state(2, np.uint32)
        random.seed(int(words[0]))
        np.random.seed(int(words[0]))
        torch.manual_seed(int(words[0]) << 32 | int(words[1]))  # all CUDA devices too
