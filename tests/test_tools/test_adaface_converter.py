"""AdaFace .ckpt -> mmoaml conversion on a hand-built reference-layout state dict."""
import argparse
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from tool_module import load_tool

from mmoaml.fileio import convert_adaface_state_dict, describe_adaface_arch
from mmoaml.models.backbones import IResNet
from mmoaml.models.necks import FaceEmbeddingNeck

NUM_CLASSES = 10


def _load_tool():
    return load_tool('model_converters/adaface_to_mmoaml.py', 'adaface_to_mmoaml')


def _bn(prefix, channels, affine=True):
    shapes = OrderedDict()
    if affine:
        shapes[f'{prefix}.weight'] = (channels, )
        shapes[f'{prefix}.bias'] = (channels, )
    shapes[f'{prefix}.running_mean'] = (channels, )
    shapes[f'{prefix}.running_var'] = (channels, )
    shapes[f'{prefix}.num_batches_tracked'] = ()
    return shapes


def reference_shapes(units_per_stage=(2, 2, 2, 2), se=False):
    """Key -> shape of the reference AdaFace IR model (basic units), from its description:
    input_layer = conv, BN, PReLU; unit j of a stage: shortcut (conv1x1 + BN when the width
    changes), res_layer = BN, conv3x3, BN, PReLU, conv3x3, BN [, se_block.fc1/fc2];
    output_layer = BN2d, Dropout, Flatten, Linear(512*7*7 -> 512), BN1d(affine=False)."""
    shapes = OrderedDict({'input_layer.0.weight': (64, 3, 3, 3)})
    shapes.update(_bn('input_layer.1', 64))
    shapes['input_layer.2.weight'] = (64, )
    unit, in_ch = 0, 64
    for count, out_ch in zip(units_per_stage, (64, 128, 256, 512)):
        for _ in range(count):
            p = f'body.{unit}'
            if in_ch != out_ch:
                shapes[f'{p}.shortcut_layer.0.weight'] = (out_ch, in_ch, 1, 1)
                shapes.update(_bn(f'{p}.shortcut_layer.1', out_ch))
            shapes.update(_bn(f'{p}.res_layer.0', in_ch))
            shapes[f'{p}.res_layer.1.weight'] = (out_ch, in_ch, 3, 3)
            shapes.update(_bn(f'{p}.res_layer.2', out_ch))
            shapes[f'{p}.res_layer.3.weight'] = (out_ch, )
            shapes[f'{p}.res_layer.4.weight'] = (out_ch, out_ch, 3, 3)
            shapes.update(_bn(f'{p}.res_layer.5', out_ch))
            if se:
                shapes[f'{p}.res_layer.se_block.fc1.weight'] = (out_ch // 16, out_ch, 1, 1)
                shapes[f'{p}.res_layer.se_block.fc2.weight'] = (out_ch, out_ch // 16, 1, 1)
            unit, in_ch = unit + 1, out_ch
    shapes.update(_bn('output_layer.0', 512))
    shapes['output_layer.3.weight'] = (512, 512 * 7 * 7)
    shapes['output_layer.3.bias'] = (512, )
    shapes.update(_bn('output_layer.4', 512, affine=False))
    return shapes


def lightning_state_dict(se=False):
    generator = torch.Generator().manual_seed(0)
    state = OrderedDict()
    for key, shape in reference_shapes(se=se).items():
        if key.endswith('num_batches_tracked'):
            state[f'model.{key}'] = torch.randint(0, 1000, (), generator=generator)
        else:
            state[f'model.{key}'] = torch.randn(shape, generator=generator)
    state['head.kernel'] = torch.randn(512, NUM_CLASSES, generator=generator)
    state['head.t'] = torch.zeros(1)
    state['head.batch_mean'] = torch.full((1, ), 20.5)
    state['head.batch_std'] = torch.full((1, ), 99.5)
    return state


class _AdaFaceHeadStandIn(nn.Module):
    """Parameter/buffer names of mmoaml's AdaFaceHead (kernel [embed_dim, num_classes])."""

    def __init__(self, embed_dim=512, num_classes=NUM_CLASSES):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(embed_dim, num_classes))
        self.register_buffer('batch_mean', torch.zeros(1))
        self.register_buffer('batch_std', torch.zeros(1))


class _OAMLStandIn(nn.Module):
    """The attribute names of the OAML recognizer that the converted keys address."""

    def __init__(self, se=False):
        super().__init__()
        self.backbone = IResNet(depth=18, se=se)
        self.neck = FaceEmbeddingNeck()
        self.adaface_head = _AdaFaceHeadStandIn()


def test_reference_layout_has_the_documented_key_count():
    assert len(reference_shapes()) == 179  # docs/reference.md#parameter-counts-and-macs


@pytest.mark.parametrize('se', [False, True])
def test_converted_weights_load_strictly_with_equal_values(se):
    reference = lightning_state_dict(se=se)
    converted = convert_adaface_state_dict(reference)
    model = _OAMLStandIn(se=se)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    state = model.state_dict()
    assert len(state) == len(reference) - 1  # only head.t is dropped
    assert torch.equal(state['backbone.body.3.res_layer.4.weight'],
                       reference['model.body.3.res_layer.4.weight'])
    assert torch.equal(state['neck.feat_bn.running_var'],
                       reference['model.output_layer.0.running_var'])
    assert torch.equal(state['neck.fc.weight'], reference['model.output_layer.3.weight'])
    assert torch.equal(state['neck.embed_bn.running_mean'],
                       reference['model.output_layer.4.running_mean'])
    assert torch.equal(state['adaface_head.kernel'], reference['head.kernel'])
    assert torch.equal(state['adaface_head.batch_std'], reference['head.batch_std'])
    for key, value in converted.items():
        assert torch.equal(state[key], value), key
    assert describe_adaface_arch(converted) == dict(
        depth=18, se=se, in_channels=512, feat_size=7, embed_dim=512, num_classes=NUM_CLASSES)


def test_tool_needs_trust_for_lightning_objects_and_writes_weights_only_file(tmp_path):
    tool = _load_tool()
    src = tmp_path / 'adaface_ir18.ckpt'
    torch.save({
        'epoch': 3,
        'state_dict': lightning_state_dict(),
        'hyper_parameters': argparse.Namespace(arch='ir_18', m=0.4),
    }, src)
    dst = tmp_path / 'out' / 'ir18.pth'
    with pytest.raises(SystemExit) as info:
        tool.convert(str(src), str(dst))
    assert '--trust' in str(info.value) and 'argparse.Namespace' in str(info.value)
    assert not dst.exists()

    meta = tool.convert(str(src), str(dst), trust=True)
    written = torch.load(dst)  # torch's defaults (weights_only=True)
    assert written['meta'] == meta and meta['arch']['depth'] == 18
    assert 'adaface_head.t' not in written['state_dict']
    model = _OAMLStandIn()
    model.load_state_dict(written['state_dict'], strict=True)


def test_backbone_only_state_dict_and_unknown_keys():
    reference = lightning_state_dict()
    bare = OrderedDict((k[len('model.'):], v) for k, v in reference.items()
                       if k.startswith('model.'))
    converted = convert_adaface_state_dict(bare)
    assert 'backbone.input_layer.0.weight' in converted and 'neck.fc.bias' in converted
    assert not any(k.startswith('adaface_head.') for k in converted)
    with pytest.raises(ValueError, match='optimizer_states'):
        convert_adaface_state_dict({**reference, 'optimizer_states.0': torch.zeros(1)})
