"""Optimizer wrapper that refuses updates from non-finite losses."""
import logging
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from mmoaml.registry import OPTIM_WRAPPERS

#: Message hub key of the running count of skipped updates (logged with the training scalars).
SKIPPED_KEY = 'train/skipped_nonfinite'


@OPTIM_WRAPPERS.register_module()
class FiniteLossOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips any update whose loss is NaN or infinite, and keeps training.

    A non-finite loss must never reach the optimizer (the predecessor replaced NaN losses by 0
    and hid divergence). Before back-propagating, :meth:`update_params` checks
    ``torch.isfinite(loss)``. On a non-finite loss it does not back-propagate, zeroes the
    gradients, counts the skip, warns with the iteration number, and writes the running count to
    the message hub as ``train/skipped_nonfinite`` so it appears in every training log line
    (the count is updated every iteration, and restored from the message hub on resume).

    Under DDP the finite flag is all-reduced with MIN first, so every rank skips together;
    a rank that skipped its backward alone would leave the others waiting forever in the
    gradient all-reduce. (The check therefore costs one scalar all-reduce per iteration.)

    With gradient accumulation (``accumulative_counts > 1``) one non-finite micro-batch
    poisons its whole accumulation window: the gradients accumulated so far are dropped, the
    remaining micro-batches of the window are not back-propagated, no step is taken at the end
    of the window, and the skip is counted once. ``_inner_count`` advances on every call, as it
    would with back-propagation, so window boundaries and the loss scaling of the last, partial
    window stay as in :class:`~mmengine.optim.OptimWrapper`.

    Only parameters and optimizer state are protected: buffers updated during the forward pass
    (BatchNorm running statistics) cannot be restored here.

    Args:
        **kwargs: Arguments of :class:`~mmengine.optim.OptimWrapper` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``).

    Examples:
        >>> # config
        >>> optim_wrapper = dict(
        ...     type='FiniteLossOptimWrapper',
        ...     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._skipped: Optional[int] = None
        self._window_poisoned = False

    @property
    def skipped_updates(self) -> int:
        """Number of updates skipped for a non-finite loss (including before a resume)."""
        if self._skipped is None:
            history = self.message_hub.log_scalars.get(SKIPPED_KEY)
            self._skipped = int(history.current()) if history is not None else 0
        return self._skipped

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Back-propagate and step as ``OptimWrapper`` does, unless a loss is non-finite.

        Args:
            loss (Tensor): The loss of the current (micro-)batch.
            step_kwargs (dict, optional): Arguments of ``optimizer.step``.
            zero_kwargs (dict, optional): Arguments of ``optimizer.zero_grad``.
        """
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        skipped = self.skipped_updates
        if not self._window_poisoned and not self._all_ranks_finite(loss):
            self._window_poisoned = True
            self.zero_grad(**zero_kwargs)
            skipped += 1
            self._skipped = skipped
            iteration = self.message_hub.get_info('iter')
            print_log(
                f'Non-finite loss ({loss.item()} on this rank) at iteration '
                f'{"?" if iteration is None else iteration + 1}: update skipped '
                f'({skipped} so far)',
                logger='current',
                level=logging.WARNING)
        if self._window_poisoned:
            self._inner_count += 1
            if self.should_update():
                self.zero_grad(**zero_kwargs)
                self._window_poisoned = False
        else:
            self.backward(self.scale_loss(loss))
            if self.should_update():
                self.step(**step_kwargs)
                self.zero_grad(**zero_kwargs)
        self.message_hub.update_scalar(SKIPPED_KEY, skipped)

    @staticmethod
    def _all_ranks_finite(loss: torch.Tensor) -> bool:
        """True when the loss is finite on every rank (MIN all-reduce of the local flag)."""
        flag = torch.isfinite(loss.detach()).all().to(torch.int32).reshape(1)
        all_reduce(flag, op='min')
        return bool(flag.item())
