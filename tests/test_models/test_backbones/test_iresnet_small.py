"""IResNet size overrides (stem_channels, stage_channels, stage_units) for small variants."""
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
