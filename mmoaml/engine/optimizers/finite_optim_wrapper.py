"""Optimizer wrapper that refuses updates from non-finite losses, gradients or buffers."""
import logging
import math
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from mmoaml.registry import OPTIM_WRAPPERS

#: Message hub key of the running count of skipped updates (logged with the training scalars).
SKIPPED_KEY = 'train/skipped_nonfinite'

#: Names shown in full in a skip message; the rest are counted.
_SHOWN_NAMES = 3


def _strip_wrapper(name: str) -> str:
    # DDP (and MMEngine's model wrappers) register the model as ``module``.
    return name[len('module.'):] if name.startswith('module.') else name


def _l1_norms_finite(tensors: List[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One bool tensor: every tensor finite. Fused (``_foreach_norm``), no host sync.

    The L1 norm in float32 is NaN or inf exactly when an element is, or when the magnitudes sum
    beyond float32's range (~3.4e38), which no usable gradient or buffer does.
    """
    norms = torch._foreach_norm(tensors, 1, dtype=torch.float32)
    return torch.stack([n.to(device) for n in norms]).isfinite().all()


@OPTIM_WRAPPERS.register_module()
class FiniteLossOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips any update whose loss, gradients or model buffers are NaN or
    infinite, restores the buffers, and keeps training (up to a limit).

    A non-finite value must never reach the weights (the predecessor replaced NaN losses by 0
    and hid divergence). At the end of every accumulation window (every call when
    ``accumulative_counts == 1``), before ``step``, :meth:`update_params` makes one fused check:
    the losses of the window, every gradient of the optimizer's parameters and every
    floating-point buffer of the model (BatchNorm running statistics, AdaFace's norm EMA) must be
    finite. The local flag is all-reduced with MIN, so every rank decides together, and read on
    the host once: one scalar all-reduce and one synchronisation per update.

    When anything is non-finite the update is skipped: no step, the gradients are zeroed, the
    model's buffers are put back to their values from before the window's first forward pass
    (a skipped update leaves parameters, optimizer state and buffers as they were),
    the skip is counted, a warning names what was non-finite on this rank, and the running count
    is written to the message hub as ``train/skipped_nonfinite`` so it appears in every training
    log line (it is updated every iteration and restored from the message hub on resume).
    After ``max_consecutive_skips`` skips in a row training stops with a ``FloatingPointError``
    that says what was non-finite at the first of them: the loss terms (named from the
    ``train/<term>`` scalars that MMEngine's ``RuntimeInfoHook`` logs, available from the next
    iteration on), the buffers, or the parameters whose gradients were.

    The buffer snapshot is taken in :meth:`optim_context`, the one place where MMEngine's
    ``train_step`` shows the wrapper the model; code that calls :meth:`update_params` without
    it gets the loss and gradient checks only. Snapshot and restore are fused copies into
    buffers kept between windows. Gradients are checked only where the optimizer steps on them
    unguarded: :class:`AutocastOptimWrapper` with a ``GradScaler`` leaves them to the scaler.

    Every micro-batch is back-propagated, finite or not (a non-finite loss only makes its
    window's gradients non-finite, and they are dropped); this keeps the check to one per window
    and keeps DDP ranks in step: they all run every backward and every all-reduce. A
    non-finite loss that does not require grad is not back-propagated.

    Args:
        max_consecutive_skips (int, optional): Skipped updates in a row after which training
            stops with an error; None never stops. Defaults to 50.
        **kwargs: Arguments of :class:`~mmengine.optim.OptimWrapper` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``).

    Examples:
        >>> # config
        >>> optim_wrapper = dict(
        ...     type='FiniteLossOptimWrapper', max_consecutive_skips=50,
        ...     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
    """

    def __init__(self, max_consecutive_skips: Optional[int] = 50, **kwargs) -> None:
        super().__init__(**kwargs)
        if max_consecutive_skips is not None and (isinstance(max_consecutive_skips, bool)
                                                  or not isinstance(max_consecutive_skips, int)
                                                  or max_consecutive_skips < 1):
            raise ValueError('FiniteLossOptimWrapper: max_consecutive_skips must be a positive '
                             f'int or None, got {max_consecutive_skips!r}')
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0
        self._skipped: Optional[int] = None
        self._model: Optional[nn.Module] = None
        self._buffers: List[Tuple[str, torch.Tensor]] = []
        self._snapshot: List[torch.Tensor] = []
        self._window_open = False
        self._window_losses: List[torch.Tensor] = []
        self._first_skip: Optional[dict] = None

    @property
    def skipped_updates(self) -> int:
        """Number of skipped updates (including before a resume)."""
        if self._skipped is None:
            history = self.message_hub.log_scalars.get(SKIPPED_KEY)
            self._skipped = int(history.current()) if history is not None else 0
        return self._skipped

    @contextmanager
    def optim_context(self, model: nn.Module):
        """MMEngine's context; at the start of a window, snapshot the model's buffers."""
        if not self._window_open:
            self._take_snapshot(model)
            self._window_open = True
        with super().optim_context(model):
            yield

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Back-propagate, and at the end of a window step unless something is non-finite.

        Args:
            loss (Tensor): The loss of the current (micro-)batch.
            step_kwargs (dict, optional): Arguments of ``optimizer.step``.
            zero_kwargs (dict, optional): Arguments of ``optimizer.zero_grad``.
        """
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        self._name_first_loss_terms()
        self._window_open = True
        self._window_losses.append(loss.detach())
        if loss.requires_grad or bool(torch.isfinite(loss).all()):
            # a finite loss without grad fails here as in OptimWrapper: a bug, not a skip
            self.backward(self.scale_loss(loss))
        else:
            self._inner_count += 1  # as backward() would have
        if self.should_update():
            if self._all_ranks_finite():
                self.step(**step_kwargs)
                self.consecutive_skips = 0
                self._first_skip = None
            else:
                self._skip()
            self.zero_grad(**zero_kwargs)
            self._window_open = False
            self._window_losses = []
            self._buffers = []  # the snapshot belongs to this window only
        self.message_hub.update_scalar(SKIPPED_KEY, self.skipped_updates)

    def _checks_gradients(self) -> bool:
        """Whether the fused check covers the gradients (subclasses with a scaler say no)."""
        return True

    def _take_snapshot(self, model: nn.Module) -> None:
        self._model = model
        # All buffers are restored on a skip (num_batches_tracked with the statistics it
        # weights when BatchNorm's momentum is None); only floating-point ones can be non-finite.
        buffers = [(_strip_wrapper(name), buf) for name, buf in model.named_buffers()]
        tensors = [buf.detach() for _, buf in buffers]
        reusable = len(tensors) == len(self._snapshot) and all(
            s.shape == t.shape and s.dtype == t.dtype and s.device == t.device
            for s, t in zip(self._snapshot, tensors))
        if not reusable:
            self._snapshot = [t.clone() for t in tensors]
        elif tensors:
            torch._foreach_copy_(self._snapshot, tensors)
        self._buffers = buffers

    def _gradients(self) -> List[torch.Tensor]:
        grads = []
        for group in self.optimizer.param_groups:
            for param in group['params']:
                if param.grad is not None:
                    grads.append(param.grad._values() if param.grad.is_sparse else param.grad)
        return grads

    def _all_ranks_finite(self) -> bool:
        """The fused check of losses, gradients and buffers, MIN all-reduced over the ranks."""
        device = self._window_losses[0].device
        flag = torch.stack([torch.isfinite(loss).all() for loss in self._window_losses]).all()
        tensors = [buf.detach() for _, buf in self._buffers if buf.is_floating_point()]
        if self._checks_gradients():
            tensors += self._gradients()
        if tensors:
            flag = flag & _l1_norms_finite(tensors, device)
        flag = flag.to(torch.int32).reshape(1)
        all_reduce(flag, op='min')
        return bool(flag.item())

    def _skip(self) -> None:
        """Count and report a skipped update, restore the buffers, stop after too many."""
        causes = self._describe_non_finite()  # before the restore erases the evidence
        if self._buffers:  # snapshot taken in this window's optim_context
            torch._foreach_copy_([buf.detach() for _, buf in self._buffers], self._snapshot)
        self._skipped = self.skipped_updates + 1
        self.consecutive_skips += 1
        iteration = self.message_hub.get_info('iter')
        if self.consecutive_skips == 1:
            self._first_skip = dict(iteration=iteration, causes=causes,
                                    loss_terms_pending=causes[0].startswith('loss'))
        print_log(
            f'Non-finite {"; ".join(causes)} at iteration '
            f'{"?" if iteration is None else iteration + 1}: update skipped '
            f'({self._skipped} so far, {self.consecutive_skips} in a row)',
            logger='current',
            level=logging.WARNING)
        if (self.max_consecutive_skips is not None
                and self.consecutive_skips >= self.max_consecutive_skips):
            self.message_hub.update_scalar(SKIPPED_KEY, self._skipped)
            first = self._first_skip
            at = '?' if first['iteration'] is None else first['iteration'] + 1
            raise FloatingPointError(
                f'{self.consecutive_skips} consecutive updates skipped for non-finite values '
                f'(max_consecutive_skips={self.max_consecutive_skips}); the first of them, at '
                f'iteration {at}, had non-finite {"; ".join(first["causes"])}')

    def _describe_non_finite(self) -> List[str]:
        """What is non-finite on this rank, in the order it arises: loss, buffers, gradients.

        Runs only on a skipped update, so reading values on the host is affordable here.
        """
        causes = []
        bad_losses = [loss for loss in self._window_losses if not torch.isfinite(loss).all()]
        if bad_losses:
            value = bad_losses[0].item() if bad_losses[0].numel() == 1 else 'non-finite'
            where = (f', {len(bad_losses)} of {len(self._window_losses)} micro-batches'
                     if len(self._window_losses) > 1 else '')
            causes.append(f'loss ({value} on this rank{where})')
        bad_buffers = [name for name, buf in self._buffers
                       if buf.is_floating_point() and not torch.isfinite(buf).all()]
        if bad_buffers:
            causes.append(f'buffer {self._names(bad_buffers)}')
        if self._checks_gradients():
            bad_grads = [name for name, param in self._named_parameters()
                         if param.grad is not None and not torch.isfinite(param.grad).all()]
            if bad_grads:
                causes.append(f'gradient of {self._names(bad_grads)}')
        return causes or ['values on another rank']

    @staticmethod
    def _names(names: List[str]) -> str:
        shown = ', '.join(names[:_SHOWN_NAMES])
        rest = len(names) - _SHOWN_NAMES
        return shown + (f' and {rest} more' if rest > 0 else '')

    def _named_parameters(self) -> List[Tuple[str, nn.Parameter]]:
        """The optimizer's parameters with the model's names where the model was seen."""
        names = {}
        if self._model is not None:
            names = {id(p): _strip_wrapper(n) for n, p in self._model.named_parameters()}
        return [(names.get(id(param), f'param_groups[{g}][{i}] {tuple(param.shape)}'), param)
                for g, group in enumerate(self.optimizer.param_groups)
                for i, param in enumerate(group['params'])]

    def _name_first_loss_terms(self) -> None:
        """Replace 'loss' in the first skip's causes by the non-finite terms it logged.

        ``RuntimeInfoHook`` writes the skipped iteration's loss terms to the message hub after
        ``train_step`` returns, so they can be read from the next iteration on.
        """
        first = self._first_skip
        if first is None or not first['loss_terms_pending']:
            return
        first['loss_terms_pending'] = False
        iteration = self.message_hub.get_info('iter')
        if first['iteration'] is None or iteration != first['iteration'] + 1:
            return  # not driven by a Runner: the current scalars are not that iteration's
        terms = []
        for key, history in self.message_hub.log_scalars.items():
            name = key[len('train/'):]
            if key.startswith('train/') and 'loss' in name and name != 'loss':
                value = float(history.current())
                if not math.isfinite(value):
                    terms.append(f'{name} = {value}')
        if terms:
            first['causes'][0] = f'loss terms {", ".join(terms)} (on this rank)'
