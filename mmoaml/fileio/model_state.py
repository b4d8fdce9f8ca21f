"""Loading a checkpoint's weights into a model, checked: keys, shapes and finite values."""
import logging
import re
from collections import OrderedDict
from typing import Any, List, Mapping, Sequence, Tuple

import torch
from mmengine.logging import print_log

from .checkpoint import checkpoint_state_dict

__all__ = ['CheckpointMismatchError', 'load_model_state']


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not match the model it is loaded into.

    ``missing``, ``unexpected`` and ``mismatched`` hold every key of each kind (empty lists
    where none).
    """

    def __init__(self, message: str, missing: Sequence[str] = (), unexpected: Sequence[str] = (),
                 mismatched: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched = list(mismatched)


# Key prefixes of checkpoints that need converting before an mmoaml model can load them.
_ADAFACE_PREFIXES = ('model.', 'head.', 'input_layer.', 'body.', 'output_layer.')
_INSIGHTFACE_PREFIXES = ('features.', 'conv1.', 'bn1.', 'prelu.', 'layer1.', 'layer2.',
                         'layer3.', 'layer4.', 'bn2.', 'fc.')
#: Keys of each kind listed in a mismatch or non-finite error.
_LISTED = 10


def _listing(keys: Sequence[str]) -> str:
    more = f', ... ({len(keys) - _LISTED} more)' if len(keys) > _LISTED else ''
    return ', '.join(keys[:_LISTED]) + more


def _foreign_layout(unexpected: Sequence[str], model_keys: Sequence[str]) -> str:
    """A hint when most unexpected keys are an AdaFace or insightface layout, else ''."""
    for prefixes, hint in (
        (_ADAFACE_PREFIXES, 'The keys look like an AdaFace checkpoint (model.* / head.* or '
         'input_layer.* / body.*): convert it first with python '
         'tools/model_converters/adaface_to_mmoaml.py SRC.ckpt DST.pth.'),
        (_INSIGHTFACE_PREFIXES, 'The keys look like an insightface (ArcFace iresnet) checkpoint '
         '(conv1.* / layer1.* / features.*), not an mmoaml one; weights need converting to '
         "mmoaml's keys first (tools/model_converters/adaface_to_mmoaml.py converts AdaFace "
         'checkpoints, not this layout).'),
    ):
        foreign = [k for k in prefixes if not any(m.startswith(k) for m in model_keys)]
        hits = [k for k in unexpected if k.startswith(tuple(foreign))] if foreign else []
        if hits and 2 * len(hits) >= len(unexpected):
            return ' ' + hint
    return ''


def _non_finite(state_dict: Mapping[str, Any]) -> List[str]:
    """``name (n NaN, m inf)`` of every floating-point tensor holding NaN or inf."""
    found = []
    for key, value in state_dict.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        if bool(torch.isfinite(value).all()):
            continue
        nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
        found.append(f'{key} ({nan} NaN, {inf} inf)')
    return found


def load_model_state(model: torch.nn.Module,
                     checkpoint: Any,
                     filename: str,
                     strict: bool = True,
                     revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )) -> None:
    """Copy a loaded checkpoint's weights into ``model`` after checking that they fit.

    Args:
        model (nn.Module): The model (unwrapped) that receives the weights.
        checkpoint: What :func:`load_checkpoint_file` or ``CheckpointLoader`` returned.
        filename (str): The checkpoint's name, for the messages.
        strict (bool): Missing or unexpected keys are an error; with False they are logged
            as a warning and the matching keys are loaded. Defaults to True.
        revise_keys (Sequence[tuple[str, str]]): ``(pattern, replacement)`` applied to every
            checkpoint key first, as in MMEngine. Defaults to stripping a DDP ``module.``.

    Raises:
        NotACheckpointError: The checkpoint holds no weights (see :func:`checkpoint_state_dict`).
        ValueError: Some weights are NaN or inf (named); never loaded.
        CheckpointMismatchError: Shapes differ (always), or keys are missing or unexpected
            (with ``strict``). The first 10 keys of each kind are listed with their counts.
    """
    state_dict = checkpoint_state_dict(checkpoint, filename)
    # Version metadata (e.g. BatchNorm's) travels with the dict, as in MMEngine.
    metadata = getattr(state_dict, '_metadata', None)
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict((re.sub(pattern, replacement, k), v)
                                 for k, v in state_dict.items())
    non_finite = _non_finite(state_dict)
    if non_finite:
        raise ValueError(f'checkpoint "{filename}" has non-finite weights (NaN/inf) in '
                         f'{len(non_finite)} tensors: {_listing(non_finite)}; the run that '
                         'wrote it diverged or the file is damaged')
    expected = model.state_dict()
    # BatchNorm's counter is absent from older checkpoints and unused in eval; MMEngine ignores
    # it too.
    missing = [k for k in expected
               if k not in state_dict and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        k for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    parts = []
    if missing:
        parts.append(f'{len(missing)} missing keys (in the model, not in the checkpoint): '
                     f'{_listing(missing)}')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected keys (in the checkpoint, not in the '
                     f'model): {_listing(unexpected)}')
    if mismatched:
        shapes = [f'{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}'
                  for k in mismatched]
        parts.append(f'{len(mismatched)} shape mismatches: {_listing(shapes)}')
    if parts:
        message = (f'checkpoint "{filename}" does not match the model: ' + '; '.join(parts) +
                   '.' + _foreign_layout(unexpected, list(expected)))
        if strict or mismatched:
            raise CheckpointMismatchError(message, missing, unexpected, mismatched)
        print_log(f'{message} Loading the matching keys only (strict=False).', logger='current',
                  level=logging.WARNING)
    matching = OrderedDict((k, v) for k, v in state_dict.items() if k in expected)
    if metadata is not None:
        matching._metadata = metadata
    model.load_state_dict(matching, strict=False)

