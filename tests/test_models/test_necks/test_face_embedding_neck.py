"""FaceEmbeddingNeck: reference output layer maths, NCHW flatten order, the zero-vector epsilon."""
import math

import numpy as np
import pytest
import torch

from mmoaml.models.necks import FaceEmbeddingNeck
from mmoaml.registry import MODELS


def _randomise(neck):
    torch.manual_seed(0)
    neck.feat_bn.running_mean.uniform_(-0.5, 0.5)
    neck.feat_bn.running_var.uniform_(0.5, 2.0)
    neck.feat_bn.weight.data.uniform_(0.5, 1.5)
    neck.feat_bn.bias.data.uniform_(-0.5, 0.5)
    neck.fc.weight.data.normal_()
    neck.fc.bias.data.normal_()
    neck.embed_bn.running_mean.uniform_(-0.5, 0.5)
    neck.embed_bn.running_var.uniform_(0.5, 2.0)


def test_eval_forward_matches_numpy_definition():
    neck = FaceEmbeddingNeck(in_channels=3, feat_size=(2, 3), embed_dim=4).eval()
    _randomise(neck)
    x = torch.randn(2, 3, 2, 3)
    embedding, norm = neck((torch.zeros(1), x))

    # numpy loops over the definition: BN2d (eval), flatten index c*h*w + y*w + x, linear,
    # BN1d without affine, split into norm and direction.
    xs = x.numpy().astype(np.float64)
    bn = neck.feat_bn
    mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
    gamma, beta = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    W, b = neck.fc.weight.detach().numpy(), neck.fc.bias.detach().numpy()
    mean1, var1 = neck.embed_bn.running_mean.numpy(), neck.embed_bn.running_var.numpy()
    for i in range(2):
        flat = np.zeros(18)
        for c in range(3):
            for yy in range(2):
                for xx in range(3):
                    v = (xs[i, c, yy, xx] - mean[c]) / math.sqrt(var[c] + bn.eps)
                    flat[c * 6 + yy * 3 + xx] = v * gamma[c] + beta[c]
        f = W.astype(np.float64) @ flat + b
        f = (f - mean1) / np.sqrt(var1 + neck.embed_bn.eps)
        n = math.sqrt((f**2).sum())
        assert norm[i, 0].item() == pytest.approx(n, rel=1e-5)
        np.testing.assert_allclose(embedding[i].detach().numpy(), f / n, rtol=1e-4, atol=1e-6)
    assert neck.embed_bn.weight is None and neck.embed_bn.bias is None


def test_zero_features_give_zero_embedding_not_nan():
    # Deviation from the reference, which divides by the bare norm: 0 / 0 = NaN there.
    neck = FaceEmbeddingNeck(in_channels=2, feat_size=1, embed_dim=3).eval()
    neck.fc.weight.data.zero_()
    neck.fc.bias.data.zero_()
    x = torch.randn(2, 2, 1, 1)
    embedding, norm = neck((x, ))
    assert torch.equal(norm, torch.zeros(2, 1))
    assert torch.equal(embedding, torch.zeros(2, 3))
    reference = torch.zeros(2, 3) / torch.zeros(2, 3).norm(dim=1, keepdim=True)
    assert torch.isnan(reference).all()
    for dtype in (torch.float16, torch.bfloat16):
        half = FaceEmbeddingNeck(in_channels=2, feat_size=1, embed_dim=3).eval().to(dtype)
        half.fc.weight.data.zero_()
        half.fc.bias.data.zero_()
        emb, _ = half((x.to(dtype), ))
        assert torch.equal(emb, torch.zeros(2, 3, dtype=dtype))


def test_train_mode_embedding_is_unit_and_norm_carries_gradient():
    neck = FaceEmbeddingNeck(in_channels=8, feat_size=2, embed_dim=6).train()
    x = torch.randn(4, 8, 2, 2, requires_grad=True)
    embedding, norm = neck((x, ))
    assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-6)
    norm.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_parameter_count_and_reference_init():
    neck = MODELS.build(dict(type='FaceEmbeddingNeck', _scope_='mmoaml'))
    assert sum(p.numel() for p in neck.parameters()) == 12_846_592
    assert neck.dropout.p == 0.4
    neck.init_weights()
    # Kaiming normal, fan_out = out_features = 512, ReLU gain: std = sqrt(2 / 512).
    assert neck.fc.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.01)
    assert torch.equal(neck.fc.bias, torch.zeros(512))
    assert torch.equal(neck.feat_bn.weight, torch.ones(512))
    assert torch.equal(neck.feat_bn.bias, torch.zeros(512))


def test_wrong_map_shape_is_rejected():
    neck = FaceEmbeddingNeck(in_channels=4, feat_size=7, embed_dim=8)
    with pytest.raises(ValueError, match=r'\[B, 4, 7, 7\]'):
        neck((torch.zeros(2, 4, 14, 14), ))
    with pytest.raises(ValueError, match='feat_size'):
        FaceEmbeddingNeck(feat_size=(7, 0))
