"""Refuse to write a checkpoint that holds NaN or infinite weights, buffers or optimizer state."""
from typing import Any, List

import torch
from mmengine.hooks import Hook

from mmoaml.registry import HOOKS

#: Checkpoint entries checked: weights and persistent buffers, EMAHook's copy, optimizer state.
CHECKED_KEYS = ('state_dict', 'ema_state_dict', 'optimizer')

#: Names shown in the error; the rest are counted.
_SHOWN = 10


def _non_finite(tree: Any, path: str, found: List[str]) -> None:
    """Append the path of every floating-point tensor in ``tree`` holding a NaN or inf."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() and not torch.isfinite(tree).all():
            found.append(path)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _non_finite(value, f'{path}.{key}' if path else str(key), found)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _non_finite(value, f'{path}.{i}', found)


@HOOKS.register_module()
class FiniteCheckpointHook(Hook):
    """Raise before a checkpoint with a non-finite weight, buffer or optimizer state is saved.

    :class:`~mmoaml.engine.FiniteLossOptimWrapper` skips updates whose loss, gradients or buffers
    are non-finite and restores the buffers, so nothing non-finite should ever reach the model;
    this hook is the guarantee at the one place where it would outlive the run. In
    ``before_save_checkpoint`` (which the Runner calls right before writing the file) it checks
    every floating-point tensor under ``state_dict``, ``ema_state_dict`` (EMAHook) and
    ``optimizer``, and raises ``FloatingPointError`` with their names instead of writing: the
    previous checkpoint stays the latest good one. Message-hub history (logged NaN losses of
    skipped updates) is not checked.

    The check reads the CPU copies the Runner puts into the checkpoint, once per save; it costs
    nothing on the training path. Under DDP only rank 0 saves, so only rank 0 raises (the
    launcher then stops the other ranks).

    Args:
        priority (int | str): Defaults to ``'LOWEST'``: after the hooks that add to the
            checkpoint (EMAHook's ``ema_state_dict``).

    Examples:
        >>> custom_hooks = [dict(type='FiniteCheckpointHook')]
    """

    def __init__(self, priority='LOWEST') -> None:
        self.priority = priority

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Raise when any checked tensor of ``checkpoint`` is not finite."""
        found: List[str] = []
        for key in CHECKED_KEYS:
            if key in checkpoint:
                _non_finite(checkpoint[key], key, found)
        if found:
            shown = ', '.join(found[:_SHOWN])
            rest = len(found) - _SHOWN
            raise FloatingPointError(
                f'FiniteCheckpointHook: checkpoint not saved, {len(found)} tensor(s) hold NaN or '
                f'inf: {shown}' + (f' and {rest} more' if rest > 0 else ''))
