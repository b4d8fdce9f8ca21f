"""Building a model component from a config in mmoaml's scope."""
from typing import Mapping, Optional, Union

import mmpretrain.models  # noqa: F401  (registers MMPretrain's parts: CrossEntropyLoss, ...)
import torch.nn as nn

from mmoaml.registry import MODELS

ModuleCfg = Union[dict, nn.Module]


def build_component(cfg: Optional[ModuleCfg], name: str) -> Optional[nn.Module]:
    """Build a component config in the mmoaml scope (modules and None pass through).

    The scope is set explicitly because nested builds otherwise follow whatever default scope is
    current, and an mmoaml component embedded in another project would not find mmoaml's types
    (MMPretrain's are found too: mmoaml's registry is a child of MMPretrain's).

    Args:
        cfg (dict | nn.Module, optional): The config, a built module or None.
        name (str): How error messages call the argument, e.g. ``'OAML: neck'``.

    Returns:
        nn.Module | None: The module.
    """
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f'{name} must be a config dict or an nn.Module, got '
                        f'{type(cfg).__name__}')
    cfg = dict(cfg)
    cfg.setdefault('_scope_', 'mmoaml')
    return MODELS.build(cfg)
