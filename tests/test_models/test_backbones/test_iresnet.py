"""IResNet: reference parameter counts and key layout, unit maths, freezing, checkpointing."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmoaml.models.backbones import IResNet
from mmoaml.models.backbones.iresnet import Subsample
from mmoaml.models.necks import FaceEmbeddingNeck
from mmoaml.registry import MODELS


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_model(**kwargs):
    """Backbone + neck on the meta device: exact shapes and counts without memory or compute."""
    with torch.device('meta'):
        backbone = IResNet(**kwargs)
        return backbone, FaceEmbeddingNeck(in_channels=backbone.stage_channels[-1])


# Reference figures (docs/reference.md#parameter-counts-and-macs): total, input layer, body, output
# layer at 112x112.
REFERENCE_COUNTS = {
    (18, False): (24_020_352, 1_920, 11_171_840),
    (34, False): (34_134_080, 1_920, 21_285_568),
    (50, False): (43_585_600, 1_920, 30_737_088),
    (100, False): (65_150_912, 1_920, 52_302_400),
    (50, True): (43_808_320, 1_920, 30_959_808),
    (100, True): (65_523_136, 1_920, 52_674_624),
}
OUTPUT_LAYER_COUNT = 12_846_592


@pytest.mark.parametrize('depth,se', sorted(REFERENCE_COUNTS))
def test_parameter_counts_match_reference(depth, se):
    backbone, neck = _meta_model(depth=depth, se=se)
    total, input_layer, body = REFERENCE_COUNTS[(depth, se)]
    assert _count(backbone.input_layer) == input_layer
    assert _count(backbone.body) == body
    assert _count(neck) == OUTPUT_LAYER_COUNT
    assert _count(backbone) + _count(neck) == total


def test_ir50_per_stage_prelu_and_running_stat_counts():
    backbone, neck = _meta_model(depth=50)
    starts = (0, ) + backbone.stage_ends[:-1]
    per_stage = [_count(backbone.body[s:e]) for s, e in zip(starts, backbone.stage_ends)]
    assert per_stage == [222_528, 1_117_824, 16_278_272, 13_118_464]
    prelu = sum(m.weight.numel() for m in backbone.modules() if isinstance(m, nn.PReLU))
    assert prelu == 5_888
    running = sum(b.numel() for m in (backbone, neck) for k, b in m.named_buffers()
                  if 'running' in k)
    assert running == 38_016
    # Shortcut kinds of IR-50: subsampling only in unit 0, projections in units 3, 7, 21.
    projections = [
        i for i, u in enumerate(backbone.body) if isinstance(u.shortcut_layer, nn.Sequential)
    ]
    assert projections == [3, 7, 21]
    assert isinstance(backbone.body[0].shortcut_layer, Subsample)
    assert backbone.body[0].shortcut_layer.stride == 2
    assert isinstance(backbone.body[1].shortcut_layer, Subsample)


@pytest.mark.parametrize('depth,with_tracked,without_tracked', [(18, 179, 149), (50, 467, 389),
                                                                (100, 917, 764)])
def test_state_dict_key_counts_match_reference(depth, with_tracked, without_tracked):
    backbone, neck = _meta_model(depth=depth)
    keys = list(backbone.state_dict()) + list(neck.state_dict())
    assert len(keys) == with_tracked
    assert len([k for k in keys if not k.endswith('num_batches_tracked')]) == without_tracked
    assert 'input_layer.0.weight' in keys and 'body.0.res_layer.4.weight' in keys


def test_ir_se_key_names_follow_reference():
    backbone, _ = _meta_model(depth=18, se=True)
    keys = backbone.state_dict()
    assert keys['body.0.res_layer.se_block.fc1.weight'].shape == (4, 64, 1, 1)
    assert keys['body.7.res_layer.se_block.fc2.weight'].shape == (512, 32, 1, 1)


def test_stage_shapes_at_112_and_224_and_bottleneck():
    backbone, _ = _meta_model(depth=50, out_indices=(0, 1, 2, 3))
    maps = backbone(torch.empty(2, 3, 112, 112, device='meta'))
    assert [tuple(m.shape) for m in maps] == [(2, 64, 56, 56), (2, 128, 28, 28),
                                              (2, 256, 14, 14), (2, 512, 7, 7)]

    with torch.device('meta'):
        backbone = IResNet(depth=50, input_size=224)
        neck = FaceEmbeddingNeck(feat_size=14)
    maps = backbone(torch.empty(2, 3, 224, 224, device='meta'))
    assert tuple(maps[-1].shape) == (2, 512, 14, 14)
    embedding, norm = neck(maps)
    assert tuple(embedding.shape) == (2, 512) and tuple(norm.shape) == (2, 1)
    assert neck.fc.in_features == 512 * 14 * 14

    backbone, neck = _meta_model(depth=152, out_indices=(2, 3))
    assert backbone.out_channels == (1024, 2048)
    maps = backbone(torch.empty(1, 3, 112, 112, device='meta'))
    assert [tuple(m.shape) for m in maps] == [(1, 1024, 14, 14), (1, 2048, 7, 7)]
    assert len(backbone.body) == 50
    assert _meta_model(depth=200)[0].stage_ends == (3, 27, 63, 66)


def test_real_forward_ir18_gives_finite_unit_embeddings():
    cfg = dict(type='IResNet', _scope_='mmoaml', depth=18, out_indices=(2, 3))
    backbone = MODELS.build(cfg).eval()
    neck = FaceEmbeddingNeck().eval()
    with torch.no_grad():
        maps = backbone(torch.rand(1, 3, 112, 112))
        embedding, norm = neck(maps)
    assert tuple(maps[0].shape) == (1, 256, 14, 14) and tuple(maps[1].shape) == (1, 512, 7, 7)
    assert torch.isfinite(embedding).all() and norm.item() > 0
    assert torch.allclose(embedding.norm(dim=1), torch.ones(1))


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def _randomise(module):
    """Give every BN non-trivial statistics and every PReLU its own slopes."""
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
        elif isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.0, 0.5)


def test_basic_unit_matches_its_definition():
    # Written out from the definition: BN -> conv3x3 (stride 1) -> BN -> PReLU -> conv3x3 with
    # the stride -> BN, plus the subsampled input, no activation after the sum.
    backbone = IResNet(depth=18, input_size=16).eval()
    _randomise(backbone)
    unit = backbone.body[0]  # 64 -> 64, stride 2, subsampling shortcut x[..., ::2, ::2]
    x = torch.randn(2, 64, 8, 8)
    r = unit.res_layer
    y = _bn(x, r[0])
    y = F.conv2d(y, r[1].weight, stride=1, padding=1)
    y = F.prelu(_bn(y, r[2]), r[3].weight)
    y = _bn(F.conv2d(y, r[4].weight, stride=2, padding=1), r[5])
    expected = y + x[:, :, ::2, ::2]
    with torch.no_grad():
        assert torch.allclose(unit(x), expected, atol=1e-5)

    unit = backbone.body[2]  # 64 -> 128, stride 2, conv1x1 + BN shortcut
    s = unit.shortcut_layer
    with torch.no_grad():
        res = unit.res_layer(x)
        expected = res + _bn(F.conv2d(x, s[0].weight, stride=2), s[1])
        assert torch.allclose(unit(x), expected, atol=1e-5)


@pytest.mark.parametrize('se', [False, True])
@pytest.mark.parametrize('depth', [18, 152])
def test_in_place_residual_sum_matches_out_of_place_with_gradients(depth, se):
    """The unit sums in place (out += shortcut); outputs and gradients equal the reference's
    MaxPool2d(1, s) shortcut with an out-of-place sum, in train mode, for every shortcut kind."""
    torch.manual_seed(0)
    backbone = IResNet(depth=depth, se=se, input_size=16, stage_units=(2, 1, 1, 1)).train()
    _randomise(backbone)
    units = list(backbone.body[:3])
    x = torch.randn(2, units[0].res_layer[0].num_features, 8, 8)

    def reference(unit, inp):
        s = unit.shortcut_layer
        short = (nn.MaxPool2d(1, s.stride)(inp) if isinstance(s, Subsample) else s(inp))
        return unit.res_layer(inp) + short

    outputs = []
    for forward in (lambda u, t: u(t), reference):
        inp = x.clone().requires_grad_()
        y = inp
        for unit in units:
            y = forward(unit, y)
        y.square().sum().backward()
        grads = [p.grad.clone() for u in units for p in u.parameters()]
        backbone.zero_grad()
        outputs.append((y.detach(), inp.grad, grads))
    (y1, gx1, g1), (y2, gx2, g2) = outputs
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_se_unit_scales_residual_branch_per_channel():
    backbone = IResNet(depth=18, se=True, input_size=16).eval()
    _randomise(backbone)
    unit = backbone.body[1]  # 64 -> 64, stride 1
    x = torch.randn(2, 64, 4, 4)
    r = unit.res_layer
    with torch.no_grad():
        y = r[5](r[4](r[3](r[2](r[1](r[0](x))))))
        se = r.se_block
        pooled = y.mean(dim=(2, 3), keepdim=True)
        scale = torch.sigmoid(F.conv2d(F.relu(F.conv2d(pooled, se.fc1.weight)), se.fc2.weight))
        assert se.fc1.bias is None and se.fc2.bias is None
        assert torch.allclose(unit(x), y * scale + x, atol=1e-5)


def test_bottleneck_unit_has_stride_on_last_conv():
    with torch.device('meta'):
        backbone = IResNet(depth=152)
    r = backbone.body[0].res_layer
    kernels_strides = [(m.kernel_size, m.stride) for m in r if isinstance(m, nn.Conv2d)]
    assert kernels_strides == [((1, 1), (1, 1)), ((3, 3), (1, 1)), ((1, 1), (2, 2))]
    assert r[1].out_channels == 64 and r[7].out_channels == 256


def test_init_weights_follows_reference():
    backbone = IResNet(depth=18, se=True, input_size=16)
    backbone.init_weights()
    conv = backbone.body[6].res_layer[4]  # 512 -> 512, 3x3: fan_out = 512 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    fc1 = backbone.body[6].res_layer.se_block.fc1  # 1x1, fan_out = 32
    assert fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 32), rel=0.05)
    for m in backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
        elif isinstance(m, nn.PReLU):
            assert torch.equal(m.weight, torch.full_like(m.weight, 0.25))


def test_frozen_stages_freeze_input_layer_and_first_stages():
    backbone = IResNet(depth=18, input_size=16, frozen_stages=2)
    backbone.train()
    frozen_units = backbone.stage_ends[1]  # stages 0 and 1: units 0..3
    assert frozen_units == 4
    for p in backbone.input_layer.parameters():
        assert not p.requires_grad
    for i, unit in enumerate(backbone.body):
        frozen = i < frozen_units
        assert all(p.requires_grad != frozen for p in unit.parameters())
        assert all(m.training != frozen for m in unit.modules())
    assert not backbone.input_layer[1].training

    stem_only = IResNet(depth=18, input_size=16, frozen_stages=0).train()
    assert not any(p.requires_grad for p in stem_only.input_layer.parameters())
    assert all(p.requires_grad for p in stem_only.body.parameters())

    # Frozen BNs keep their running statistics through a training forward, the others update.
    frozen_before = backbone.body[0].res_layer[0].running_mean.clone()
    trained_before = backbone.body[5].res_layer[0].running_mean.clone()
    backbone(torch.randn(2, 3, 16, 16) * 3 + 1)
    assert torch.equal(backbone.body[0].res_layer[0].running_mean, frozen_before)
    assert not torch.equal(backbone.body[5].res_layer[0].running_mean, trained_before)


def test_norm_eval_keeps_all_norms_in_eval_mode():
    backbone = IResNet(depth=18, input_size=16, norm_eval=True).train()
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert backbone.body[0].res_layer[1].training  # convs stay in train mode
    stats = [m.running_mean.clone() for m in norms]
    backbone(torch.randn(2, 3, 16, 16) + 2)
    assert all(torch.equal(m.running_mean, s) for m, s in zip(norms, stats))
    assert all(p.requires_grad for p in backbone.parameters())


def _train_step(model, x):
    out = model(x)
    loss = sum((m * torch.linspace(-1, 1, m.numel()).view_as(m)).sum() for m in out)
    loss.backward()
    return out


def test_with_cp_gives_identical_outputs_gradients_and_statistics():
    torch.manual_seed(0)
    plain = IResNet(depth=18, input_size=32, out_indices=(1, 3)).train()
    checkpointed = IResNet(depth=18, input_size=32, out_indices=(1, 3), with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    out_plain = _train_step(plain, x)
    out_cp = _train_step(checkpointed, x)
    for a, b in zip(out_plain, out_cp):
        assert torch.equal(a, b)
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6), name
    # The recomputation in backward must not update the BN statistics a second time.
    for (name, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_channels_last_input_gives_same_maps():
    backbone = IResNet(depth=18, se=True, input_size=32).eval()
    _randomise(backbone)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = backbone(x)[0]
        got = backbone.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))[0]
        neck = FaceEmbeddingNeck(feat_size=2).eval()
        emb_cl, _ = neck((got, ))
        emb, _ = neck((expected, ))
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(emb_cl, emb, atol=1e-5)


def test_bad_arguments_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match='depth'):
        IResNet(depth=101)
    with pytest.raises(ValueError, match='out_indices'):
        IResNet(depth=18, out_indices=(4, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        IResNet(depth=18, frozen_stages=5)
    with pytest.raises(ValueError, match='divisible by 16'):
        IResNet(depth=18, input_size=100)
    backbone = IResNet(depth=18, input_size=16)
    with pytest.raises(ValueError, match=r'\[B, 3, 16, 16\]'):
        backbone(torch.zeros(1, 3, 32, 32))
    assert IResNet(depth=18, out_indices=(-1, -2)).out_indices == (3, 2)


@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_subsample_copies_the_strided_positions_densely_in_the_input_layout(memory_format):
    x = torch.randn(2, 8, 10, 10).to(memory_format=memory_format).requires_grad_()
    out = Subsample(2)(x)
    expected = x.detach()[:, :, 0::2, 0::2]  # positions (2i, 2j), as MaxPool2d(1, 2) takes
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=memory_format)
    out.backward(torch.ones_like(out))
    grad = torch.zeros(2, 8, 10, 10)
    grad[:, :, 0::2, 0::2] = 1
    assert torch.equal(x.grad, grad)
    assert Subsample(1)(x) is x  # stride 1: no copy at all
