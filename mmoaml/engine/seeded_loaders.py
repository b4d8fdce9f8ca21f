"""Building a data loader seeded the way the Runner seeds its own loaders."""
from typing import Dict, Union

from mmengine.runner import Runner
from torch.utils.data import DataLoader


def build_seeded_dataloader(runner, loader: Union[DataLoader, Dict]) -> DataLoader:
    """Build a loader config with the run's seed, as MMEngine's loops do for theirs.

    The only place in mmoaml that reads the Runner's randomness config: MMEngine 0.10 keeps
    ``diff_rank_seed`` in the private ``runner._randomness_cfg`` and exposes no getter, and a
    loader built without it would draw the same augmentations on every rank when the run asked
    for different ones.

    Args:
        runner (Runner): The running Runner.
        loader (DataLoader | dict): A built loader (returned as it is) or its config.

    Returns:
        DataLoader: The loader.
    """
    if not isinstance(loader, dict):
        return loader
    randomness = getattr(runner, '_randomness_cfg', None) or {}
    return Runner.build_dataloader(
        loader, seed=runner.seed, diff_rank_seed=randomness.get('diff_rank_seed', False))
