"""Mixed-precision optimizer wrapper for CPU and CUDA that keeps the non-finite skip."""
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn

from mmoaml.registry import OPTIM_WRAPPERS
from .finite_optim_wrapper import FiniteLossOptimWrapper

#: Autocast dtypes this wrapper accepts (float32 would be a no-op, use the plain wrapper).
AUTOCAST_DTYPES = ('bfloat16', 'float16')


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(FiniteLossOptimWrapper):
    """``torch.autocast`` training on any device, with optional loss scaling, skipping updates
    with non-finite losses, gradients or buffers.

    MMEngine's ``AmpOptimWrapper`` asserts at construction that CUDA (or an NPU/MLU/MUSA) is
    present, so it cannot train on CPU-only machines, and it derives from the plain
    ``OptimWrapper``, so a NaN loss would reach the optimizer. This wrapper is what
    ``tools/train.py --amp`` selects on every machine:

    - ``optim_context`` enters ``torch.autocast(device_type, dtype)`` around the forward pass
      (and MMEngine's no-sync context during gradient accumulation);
    - bfloat16 has float32's exponent range, so it needs no loss scaling (the default for
      bfloat16); float16 does, and gets a dynamic ``torch.amp.GradScaler`` by default (the
      recipe of AdaFace's 16-bit runs, docs/reference.md#optimiser-and-schedule). The scaler's own
      skip of steps with non-finite *gradients* (followed by a smaller scale) is its normal
      operation and is not counted: with a scaler the wrapper's own check leaves the gradients
      to it;
    - a non-finite *loss* or *buffer* (and, without a scaler, gradient) skips the update on
      every rank, restores the buffers and is counted, as in :class:`FiniteLossOptimWrapper`;
      the scaler never steps on such an update, so a forward overflow does not shrink the scale
      (the scale only protects the backward pass).

    The scaler state is saved under ``loss_scaler`` in the optimizer state dict (as
    ``AmpOptimWrapper`` does), so a resumed run continues with the same scale. It holds plain
    Python numbers, which the safe checkpoint loader accepts.

    Args:
        dtype (str | torch.dtype): ``'bfloat16'`` or ``'float16'``. Defaults to ``'bfloat16'``
            (the only reduced type with fast CPU kernels; no scaling needed).
        loss_scale (str | float | dict | None): ``'auto'``: dynamic scaling for float16, none
            for bfloat16; ``'dynamic'``: a dynamic ``GradScaler``; a float: a constant scale;
            a dict: ``GradScaler`` arguments (``init_scale``, ``growth_interval``, ...);
            None: no scaling. Defaults to ``'auto'``.
        device_type (str, optional): ``'cpu'`` or ``'cuda'`` (any type ``torch.autocast``
            knows). None: the device of the optimizer's first parameter (the Runner builds the
            wrapper after moving the model). Defaults to None.
        **kwargs: Arguments of :class:`FiniteLossOptimWrapper` (``optimizer``,
            ``accumulative_counts``, ``clip_grad``, ``max_consecutive_skips``).

    Examples:
        >>> optim_wrapper = dict(
        ...     type='AutocastOptimWrapper', dtype='bfloat16',
        ...     optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Union[str, float, dict, None] = 'auto',
                 device_type: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = self._parse_dtype(dtype)
        self.device_type = device_type or self._parameter_device_type()
        self._check_device_type(self.device_type)
        if loss_scale == 'auto':
            loss_scale = 'dynamic' if self.cast_dtype == torch.float16 else None
        self._scale_update_param: Optional[float] = None
        self.loss_scaler = self._build_scaler(loss_scale)

    @staticmethod
    def _parse_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
        name = str(dtype).replace('torch.', '')
        if name not in AUTOCAST_DTYPES:
            raise ValueError(f'AutocastOptimWrapper: dtype must be one of {AUTOCAST_DTYPES}, '
                             f'got {dtype!r}')
        return getattr(torch, name)

    @staticmethod
    def _check_device_type(device_type: str) -> None:
        try:
            available = torch.amp.is_autocast_available(device_type)
        except RuntimeError:  # not a device type torch knows at all
            available = False
        if not available:
            raise ValueError(f'AutocastOptimWrapper: torch.autocast does not support device '
                             f'type {device_type!r}')

    def _parameter_device_type(self) -> str:
        for group in self.optimizer.param_groups:
            for param in group['params']:
                return param.device.type
        return 'cpu'

    def _build_scaler(self, loss_scale) -> Optional[torch.amp.GradScaler]:
        if loss_scale is None:
            return None
        if loss_scale == 'dynamic':
            return torch.amp.GradScaler(self.device_type)
        if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            # A constant scale: update() resets it to this value after every step.
            self._scale_update_param = float(loss_scale)
            return torch.amp.GradScaler(self.device_type, init_scale=float(loss_scale))
        if isinstance(loss_scale, dict):
            return torch.amp.GradScaler(self.device_type, **loss_scale)
        raise TypeError("AutocastOptimWrapper: loss_scale must be 'auto', 'dynamic', a float, a "
                        f'dict of GradScaler arguments or None, got {loss_scale!r}')

    def _checks_gradients(self) -> bool:
        # A GradScaler skips steps with non-finite (scaled) gradients itself and then lowers the
        # scale; counting those as skips would stop a healthy float16 run.
        return self.loss_scaler is None

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Back-propagate ``loss`` (multiplied by the current scale when scaling)."""
        if self.loss_scaler is None:
            super().backward(loss, **kwargs)
            return
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        """Step the optimizer; with a scaler, unscale first (clipping sees true gradients)."""
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict:
        """Optimizer state plus ``loss_scaler`` (when scaling)."""
        state_dict = super().state_dict()
        if self.loss_scaler is not None:
            state_dict['loss_scaler'] = self.loss_scaler.state_dict()
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the optimizer and, when both sides scale, the loss scaler."""
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop('loss_scaler', None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """No-sync context of gradient accumulation, then autocast for the forward pass."""
        with super().optim_context(model), torch.autocast(
                device_type=self.device_type, dtype=self.cast_dtype):
            yield
