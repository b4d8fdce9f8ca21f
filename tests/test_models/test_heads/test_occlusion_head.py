"""OcclusionHead: report architecture, parameter count, output range, input checks."""
import pytest
import torch

from mmoaml.models.heads import OcclusionHead
from mmoaml.registry import MODELS


def test_parameter_count_matches_report():
    head = OcclusionHead(in_channels=512, mid_channels=128)
    # conv3x3 512->128 no bias + BN(128) affine + conv1x1 128->1 with bias.
    assert sum(p.numel() for p in head.parameters()) == 512 * 128 * 9 + 2 * 128 + 128 + 1
    assert sum(p.numel() for p in head.parameters()) == 590209
    assert head.conv.bias is None and head.out_conv.bias is not None


@pytest.mark.parametrize('train', [False, True])
def test_output_is_a_probability_map_at_input_resolution(train):
    head = OcclusionHead(in_channels=8, mid_channels=4).train(train)
    out = head(torch.randn(3, 8, 5, 6) * 10)
    assert out.shape == (3, 1, 5, 6)
    assert torch.all((out >= 0) & (out <= 1))


def test_forward_is_the_documented_layer_stack():
    head = OcclusionHead(in_channels=8, mid_channels=4).eval()
    x = torch.randn(2, 8, 7, 7)
    conv = torch.nn.functional.conv2d(x, head.conv.weight, padding=1)
    bn = head.bn
    hidden = torch.relu((conv - bn.running_mean.view(1, -1, 1, 1)) /
                        torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps) *
                        bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    logits = (hidden * head.out_conv.weight.view(1, 4, 1, 1)).sum(1, keepdim=True)
    expected = torch.sigmoid(logits + head.out_conv.bias)
    torch.testing.assert_close(head(x), expected, atol=1e-6, rtol=1e-5)


def test_bad_input_raises():
    head = OcclusionHead(in_channels=8, mid_channels=4)
    with pytest.raises(ValueError, match='OcclusionHead'):
        head(torch.randn(2, 7, 7, 7))


def test_registered():
    cfg = dict(type='OcclusionHead', _scope_='mmoaml', in_channels=8)
    assert isinstance(MODELS.build(cfg), OcclusionHead)
