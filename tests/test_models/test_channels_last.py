"""channels_last: FaceDataPreprocessor(channels_last=True) and the OAML model it converts."""
import copy

import torch
from mmpretrain.structures import DataSample

from mmoaml.registry import MODELS

SCOPE = 'mmoaml'
SIZE = 32  # IR-18 body map 2x2x512


def _model(channels_last):
    # No dropout: its mask is drawn in memory order, so the two layouts would drop different
    # elements from the same random stream.
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='OAML',
            _scope_=SCOPE,
            data_preprocessor=dict(type='FaceDataPreprocessor', channels_last=channels_last),
            backbone=dict(type='IResNet', depth=18, input_size=SIZE),
            neck=dict(type='FaceEmbeddingNeck', in_channels=512, feat_size=2, embed_dim=16,
                      dropout=0.0),
            adaface_head=dict(type='AdaFaceHead', embed_dim=16, num_classes=2),
            qaconv_head=dict(type='QAConvHead', num_features=512, height=2, width=2),
            occlusion_head=dict(type='OcclusionHead', in_channels=512, mid_channels=8)))


def _batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    samples = []
    for i in range(6):
        sample = DataSample().set_gt_label(i // 2 % 2)
        sample.set_field(torch.ones(1, SIZE, SIZE), 'gt_visibility')
        samples.append(sample)
    return dict(inputs=list(images[:4]), data_samples=samples[:4],
                occ=dict(inputs=list(images[4:]), data_samples=samples[4:]))


def _is_channels_last(tensor):
    # 1x1 kernels are contiguous in both layouts; every 3x3 kernel and image is in one only.
    return tensor.is_contiguous(memory_format=torch.channels_last) and (
        tensor.shape[-2:] == (1, 1) or not tensor.is_contiguous())


def test_preprocessor_returns_channels_last_batches_with_the_same_values():
    plain, fast = _model(False), _model(True)
    ref = plain.data_preprocessor(copy.deepcopy(_batch()), True)
    out = fast.data_preprocessor(copy.deepcopy(_batch()), True)
    for key in ('inputs', 'occ_inputs'):
        assert _is_channels_last(out[key])
        assert not _is_channels_last(ref[key])
        assert torch.equal(out[key], ref[key])


def test_model_weights_converted_once_and_kept_by_init_and_loading():
    plain, fast = _model(False), _model(True)
    convs = [name for name, p in fast.named_parameters() if p.dim() == 4]
    assert len(convs) > 20  # every conv of the backbone and the occlusion head
    params = dict(fast.named_parameters())
    assert all(_is_channels_last(params[name]) for name in convs)
    fast.init_weights()  # what the Runner does after building
    fast.load_state_dict(plain.state_dict())  # what load_from / resume do
    params = dict(fast.named_parameters())
    assert all(_is_channels_last(params[name]) for name in convs)
    assert all(torch.equal(params[name], p) for name, p in plain.named_parameters())


def test_losses_and_gradients_match_the_default_layout():
    plain, fast = _model(False), _model(True)
    fast.load_state_dict(plain.state_dict())
    results = []
    for model in (plain, fast):
        data = model.data_preprocessor(copy.deepcopy(_batch()), True)
        losses = model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()
                 if p.grad is not None}
        results.append((losses, grads))
    (ref_losses, ref_grads), (losses, grads) = results
    assert sorted(losses) == sorted(ref_losses)
    for key, value in ref_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-4, atol=1e-5)
    assert sorted(grads) == sorted(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-3, atol=1e-4)
