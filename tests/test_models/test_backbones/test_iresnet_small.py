"""IResNet options for small variants: size overrides and the stride position."""
import pytest
import torch

from mmoaml.models.backbones import IResNet


def _basic_unit_params(c_in: int, c_out: int) -> int:
    """BasicIRUnit parameters from its definition: BN-conv3x3-BN-PReLU-conv3x3-BN (+ shortcut)."""
    residual = 2 * c_in + 9 * c_in * c_out + 2 * c_out + c_out + 9 * c_out * c_out + 2 * c_out
    shortcut = 0 if c_in == c_out else c_in * c_out + 2 * c_out  # conv1x1 + BN, else max-pool
    return residual + shortcut


def test_small_variant_has_the_requested_units_channels_and_parameter_count():
    stem, channels, units = 16, (16, 32, 64, 128), (1, 2, 2, 1)
    model = IResNet(depth=18, stem_channels=stem, stage_channels=channels, stage_units=units,
                    out_indices=(0, 1, 2, 3)).eval()
    expected = 9 * 3 * stem + 2 * stem + stem  # input conv, BN, PReLU
    c_in = stem
    for c_out, n in zip(channels, units):
        for _ in range(n):
            expected += _basic_unit_params(c_in, c_out)
            c_in = c_out
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.body) == sum(units)
    assert model.stage_ends == (1, 3, 5, 6)
    assert model.out_channels == channels
    maps = model(torch.rand(2, 3, 112, 112))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 56, 56), (2, 32, 28, 28), (2, 64, 14, 14),
                                              (2, 128, 7, 7)]


def test_overrides_equal_to_the_reference_change_nothing():
    default = IResNet(depth=34)
    explicit = IResNet(depth=34, stem_channels=64, stage_channels=(64, 128, 256, 512),
                       stage_units=(3, 4, 6, 3))
    assert [(k, v.shape) for k, v in default.state_dict().items()] == \
        [(k, v.shape) for k, v in explicit.state_dict().items()]


@pytest.mark.parametrize('kwargs, name', [
    (dict(stage_channels=(16, 32, 64)), 'stage_channels'),
    (dict(stage_units=(1, 0, 1, 1)), 'stage_units'),
    (dict(stage_units=(1, 1.5, 1, 1)), 'stage_units'),
    (dict(stem_channels=0), 'stem_channels'),
])
def test_bad_size_overrides_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        IResNet(depth=18, **kwargs)


def test_frozen_stages_follow_overridden_units():
    model = IResNet(depth=18, stage_units=(1, 3, 1, 1), stage_channels=(8, 8, 8, 8),
                    stem_channels=8, frozen_stages=2)
    frozen = [all(not p.requires_grad for p in unit.parameters()) for unit in model.body]
    assert frozen == [True, True, True, True, False, False]


def _unit_by_definition(unit, x, first_stride, last_stride):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3 -> BN, plus the 1x1-pool shortcut (eval mode)."""
    import torch.nn.functional as F
    bn0, conv1, bn1, prelu, conv2, bn2 = unit.res_layer

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False)

    y = F.conv2d(bn(bn0, x), conv1.weight, stride=first_stride, padding=1)
    y = F.prelu(bn(bn1, y), prelu.weight)
    y = bn(bn2, F.conv2d(y, conv2.weight, stride=last_stride, padding=1))
    return y + x[..., ::first_stride * last_stride, ::first_stride * last_stride]


@pytest.mark.parametrize('position, strides', [('last', (1, 2)), ('first', (2, 1))])
def test_stride_position_moves_the_stride_between_the_two_convs(position, strides):
    torch.manual_seed(0)
    model = IResNet(depth=18, input_size=16, stem_channels=8, stage_channels=(8, 8, 8, 8),
                    stage_units=(1, 1, 1, 1), stride_position=position).eval()
    for m in model.modules():  # non-trivial BN statistics, so every BN counts
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    unit = model.body[0]
    assert (unit.res_layer[1].stride[0], unit.res_layer[4].stride[0]) == strides
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), _unit_by_definition(unit, x, *strides))
    reference = IResNet(depth=18, input_size=16, stem_channels=8, stage_channels=(8, 8, 8, 8),
                        stage_units=(1, 1, 1, 1))
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert model(torch.rand(1, 3, 16, 16))[0].shape == (1, 8, 1, 1)


def test_stride_position_first_in_the_bottleneck_unit():
    model = IResNet(depth=152, input_size=16, stem_channels=8, stage_channels=(16, 16, 16, 16),
                    stage_units=(1, 1, 1, 1), stride_position='first')
    convs = [m for m in model.body[0].res_layer if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 1]


def test_bad_stride_position_names_the_argument():
    with pytest.raises(ValueError, match='stride_position'):
        IResNet(depth=18, stride_position='middle')
