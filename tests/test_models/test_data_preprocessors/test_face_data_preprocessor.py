"""FaceDataPreprocessor: uint8 BGR batches -> normalised float, channel order, occ stream."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmoaml.datasets.transforms import PackFaceInputs
from mmoaml.models import FaceDataPreprocessor
from mmoaml.registry import MODELS


def _images(n, size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _by_hand(images, to_rgb=False, mean=(127.5, ) * 3, std=(127.5, ) * 3):
    """The definition, in numpy: optional BGR->RGB, then (x - mean) / std per channel."""
    x = images.numpy().astype(np.float64)
    if to_rgb:
        x = x[:, ::-1]
    out = (x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)
    return torch.from_numpy(out.astype(np.float32))


def test_default_is_adaface_normalisation_in_bgr():
    pre = MODELS.build(dict(type='FaceDataPreprocessor', _scope_='mmoaml'))
    images = _images(3)
    out = pre(dict(inputs=images))
    assert out['inputs'].dtype == torch.float32
    torch.testing.assert_close(out['inputs'], _by_hand(images))
    # (x / 255 - 0.5) / 0.5, the AdaFace convention, on the extremes.
    extremes = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    torch.testing.assert_close(
        pre(dict(inputs=extremes))['inputs'][0, :, 0], torch.tensor([[-1.0, 1.0]] * 3))
    assert out['data_samples'] is None and set(out) == {'inputs', 'data_samples'}


def test_channel_order_bgr_kept_or_swapped_to_rgb():
    bgr = torch.empty(1, 3, 2, 2, dtype=torch.uint8)
    for channel, value in enumerate((10, 20, 30)):  # B, G, R
        bgr[:, channel] = value
    kept = FaceDataPreprocessor()(dict(inputs=bgr))['inputs'][0, :, 0, 0]
    swapped = FaceDataPreprocessor(to_rgb=True)(dict(inputs=bgr))['inputs'][0, :, 0, 0]
    to_unit = lambda v: (v - 127.5) / 127.5  # noqa: E731
    torch.testing.assert_close(kept, torch.tensor([to_unit(10), to_unit(20), to_unit(30)]))
    torch.testing.assert_close(swapped, torch.tensor([to_unit(30), to_unit(20), to_unit(10)]))


def test_per_channel_mean_std_apply_to_the_output_order():
    mean, std = (1.0, 2.0, 3.0), (2.0, 4.0, 8.0)
    images = _images(2, seed=3)
    out = FaceDataPreprocessor(mean=mean, std=std, to_rgb=True)(dict(inputs=images))['inputs']
    torch.testing.assert_close(out, _by_hand(images, to_rgb=True, mean=mean, std=std))


def test_list_input_is_stacked():
    images = _images(3, seed=1)
    out = FaceDataPreprocessor()(dict(inputs=list(images)))['inputs']
    torch.testing.assert_close(out, _by_hand(images))


def test_occlusion_batch_goes_through_the_same_conversion():
    main, occ = _images(2, seed=1), _images(3, seed=2)
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    occ_samples = []
    for i in range(3):
        sample = DataSample()
        sample.set_field(torch.full((1, 4, 4), i / 4), 'gt_visibility')
        occ_samples.append(sample)
    out = FaceDataPreprocessor(to_rgb=True)(
        dict(inputs=list(main), data_samples=samples, occ=dict(inputs=list(occ),
                                                               data_samples=occ_samples)))
    assert set(out) == {'inputs', 'data_samples', 'occ_inputs', 'occ_data_samples'}
    torch.testing.assert_close(out['inputs'], _by_hand(main, to_rgb=True))
    torch.testing.assert_close(out['occ_inputs'], _by_hand(occ, to_rgb=True))
    assert [int(s.gt_label) for s in out['data_samples']] == [0, 1]
    for i, sample in enumerate(out['occ_data_samples']):
        assert torch.equal(sample.gt_visibility, torch.full((1, 4, 4), i / 4))


def test_everything_moves_to_the_preprocessor_device():
    pre = FaceDataPreprocessor().to('meta')
    sample = DataSample()
    sample.set_field(torch.ones(1, 4, 4), 'gt_visibility')
    out = pre(dict(inputs=_images(1), data_samples=[sample],
                   occ=dict(inputs=_images(1), data_samples=[sample])))
    assert out['inputs'].device.type == 'meta' and out['occ_inputs'].device.type == 'meta'
    assert out['occ_data_samples'][0].gt_visibility.device.type == 'meta'
    assert out['data_samples'][0].gt_visibility.device.type == 'meta'


@pytest.mark.parametrize(
    'batch, message',
    [
        (dict(inputs=[torch.zeros(3, 4, 4, dtype=torch.uint8),
                      torch.zeros(3, 5, 4, dtype=torch.uint8)]), 'share one size'),
        (dict(inputs=[torch.zeros(1, 4, 4, dtype=torch.uint8)]), r'inputs\[0\]'),
        (dict(inputs=torch.zeros(2, 4, 4, 3, dtype=torch.uint8)), r'\[N, 3, H, W\]'),
        (dict(inputs=[]), 'non-empty'),
        (dict(inputs=_images(1), occ=dict(inputs=[torch.zeros(3, 4, 4), torch.zeros(3, 2, 2)])),
         'occ.inputs'),
    ])
def test_bad_inputs_raise_clear_errors(batch, message):
    with pytest.raises(ValueError, match=message):
        FaceDataPreprocessor()(batch)


def test_unknown_batch_keys_are_refused_not_dropped():
    with pytest.raises(KeyError, match='extra'):
        FaceDataPreprocessor()(dict(inputs=_images(1), extra=1))
    with pytest.raises(KeyError, match="'occ'"):
        FaceDataPreprocessor()(dict(inputs=_images(1), occ=[_images(1)]))


def test_bad_config_raises():
    with pytest.raises(ValueError, match='3 values'):
        FaceDataPreprocessor(mean=(0.0, ))
    with pytest.raises(ValueError, match='positive'):
        FaceDataPreprocessor(std=(1.0, 0.0, 1.0))


def test_packed_bgr_image_reaches_the_model_in_the_configured_order():
    img = np.empty((4, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 0, 51, 255  # B, G, R as cv2 decodes them
    packed = PackFaceInputs()(dict(img=img, gt_label=1, visibility_mask=np.ones((4, 4),
                                                                                np.float32)))
    batch = dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']])
    bgr = FaceDataPreprocessor()(batch)['inputs'][0, :, 0, 0]
    rgb = FaceDataPreprocessor(to_rgb=True)(batch)['inputs'][0, :, 0, 0]
    torch.testing.assert_close(bgr, torch.tensor([-1.0, 51 / 127.5 - 1, 1.0]))
    torch.testing.assert_close(rgb, torch.tensor([1.0, 51 / 127.5 - 1, -1.0]))
