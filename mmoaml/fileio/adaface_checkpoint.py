"""Key mapping from released AdaFace checkpoints to mmoaml's OAML model."""
import re
from collections import OrderedDict
from typing import Dict, Mapping

import torch

from mmoaml.models.backbones.iresnet import UNITS_PER_STAGE

# Reference (mk-minchul/AdaFace) key prefix -> mmoaml key prefix. The backbone keeps the
# reference layout; the reference ``output_layer`` Sequential becomes FaceEmbeddingNeck's named
# submodules (indices 1 and 2 are Dropout and Flatten, without parameters).
_PREFIX_MAP = (
    ('model.input_layer.', 'backbone.input_layer.'),
    ('model.body.', 'backbone.body.'),
    ('model.output_layer.0.', 'neck.feat_bn.'),
    ('model.output_layer.3.', 'neck.fc.'),
    ('model.output_layer.4.', 'neck.embed_bn.'),
    ('head.kernel', 'adaface_head.kernel'),
    ('head.batch_mean', 'adaface_head.batch_mean'),
    ('head.batch_std', 'adaface_head.batch_std'),
)
#: Reference keys without a counterpart: ``head.t`` is a zero buffer AdaFace never reads.
DROPPED_KEYS = ('head.t', )

_UNIT_KEY = re.compile(r'^backbone\.body\.(\d+)\.')


def convert_adaface_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an AdaFace Lightning ``state_dict`` to the keys of mmoaml's ``OAML`` model.

    ``model.input_layer.*`` / ``model.body.*`` -> ``backbone.*`` (same layout, see
    :class:`~mmoaml.models.IResNet`); ``model.output_layer.{0,3,4}.*`` ->
    ``neck.{feat_bn,fc,embed_bn}.*`` (:class:`~mmoaml.models.FaceEmbeddingNeck`);
    ``head.{kernel,batch_mean,batch_std}`` -> ``adaface_head.*`` (kernel layout
    ``[embed_dim, num_classes]`` unchanged). ``head.t`` is dropped (unused by AdaFace).
    A backbone-only state dict whose keys lack the ``model.`` prefix (as AdaFace's
    ``inference.py`` strips it) is accepted too.

    Args:
        state_dict (Mapping[str, Tensor]): The ``state_dict`` of an AdaFace ``.ckpt``.

    Returns:
        dict[str, Tensor]: The renamed tensors, in input order.

    Raises:
        ValueError: Keys that belong to neither the AdaFace model nor its head (all listed).
    """
    if not any(key.startswith(('model.', 'head.')) for key in state_dict):
        state_dict = OrderedDict((f'model.{k}', v) for k, v in state_dict.items())
    converted: Dict[str, torch.Tensor] = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        if key in DROPPED_KEYS:
            continue
        for old, new in _PREFIX_MAP:
            if key.startswith(old):
                converted[new + key[len(old):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'not an AdaFace IR/IR-SE checkpoint: {len(unknown)} unexpected keys, '
                         f'e.g. {unknown[:5]}')
    return converted


def describe_adaface_arch(converted: Mapping[str, torch.Tensor]) -> Dict[str, object]:
    """Infer the mmoaml config of a converted AdaFace state dict.

    Args:
        converted (Mapping[str, Tensor]): Output of :func:`convert_adaface_state_dict`.

    Returns:
        dict: ``depth``, ``se``, ``in_channels`` and ``feat_size`` (of the neck), ``embed_dim``,
        and ``num_classes`` when the head kernel is present.

    Raises:
        ValueError: The number of body units matches no IResNet depth.
    """
    units = {int(m.group(1)) for m in map(_UNIT_KEY.match, converted) if m}
    depths = [d for d, counts in UNITS_PER_STAGE.items() if sum(counts) == len(units)]
    if len(depths) != 1:
        raise ValueError(f'{len(units)} body units match no IResNet depth '
                         f'(units per depth: { {d: sum(c) for d, c in UNITS_PER_STAGE.items()} })')
    in_channels = converted['neck.feat_bn.weight'].shape[0]
    embed_dim, flat = converted['neck.fc.weight'].shape
    side = round((flat // in_channels)**0.5)
    arch: Dict[str, object] = dict(
        depth=depths[0],
        se=any('.se_block.' in key for key in converted),
        in_channels=in_channels,
        feat_size=side,
        embed_dim=embed_dim)
    if 'adaface_head.kernel' in converted:
        arch['num_classes'] = converted['adaface_head.kernel'].shape[1]
    return arch
