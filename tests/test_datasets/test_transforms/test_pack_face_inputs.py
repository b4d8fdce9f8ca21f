"""PackFaceInputs: tensor layout, DataSample fields and metainfo; a full training pipeline."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmoaml.datasets.transforms import PackFaceInputs
from mmoaml.structures import face_region_prior


def test_packs_inputs_label_visibility_and_meta(noise_face):
    vis = np.random.default_rng(1).random((112, 112)).astype(np.float32)
    results = dict(img=noise_face, gt_label=7, visibility_mask=vis, sample_idx=3,
                   img_path='faces.rec#3', pair_idx=1, issame=True, img_shape=(112, 112),
                   occluder=dict(type='NiqabOcclusion', style='black_rounded'), unrelated=1)
    packed = PackFaceInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 112, 112)
    assert inputs.is_contiguous()
    # Channel order unchanged: channel 0 is the image's first (blue) channel.
    assert torch.equal(inputs, torch.from_numpy(noise_face).permute(2, 0, 1))
    assert isinstance(sample, DataSample)
    assert sample.gt_label.tolist() == [7]
    assert sample.gt_visibility.dtype == torch.float32 and sample.gt_visibility.shape == (1, 112,
                                                                                          112)
    assert torch.equal(sample.gt_visibility[0], torch.from_numpy(vis))
    assert 'gt_visibility' in sample.all_keys() and 'gt_visibility' not in sample.metainfo_keys()
    meta = sample.metainfo
    assert meta['sample_idx'] == 3 and meta['img_path'] == 'faces.rec#3'
    assert meta['pair_idx'] == 1 and meta['issame'] is True and meta['img_shape'] == (112, 112)
    assert meta['occluder']['style'] == 'black_rounded' and 'unrelated' not in meta
    vis[:] = 0.0
    assert sample.gt_visibility.sum() > 0, 'the packed mask must not alias the pipeline array'


def test_defaults_without_label_or_mask(noise_face):
    sample = PackFaceInputs()(dict(img=noise_face))['data_samples']
    assert 'gt_label' not in sample
    assert torch.equal(sample.gt_visibility[0], torch.from_numpy(face_region_prior((112, 112))))
    assert sample.metainfo == {}


def test_meta_keys_argument_and_errors(noise_face):
    sample = PackFaceInputs(meta_keys=('img_path', ))(dict(img=noise_face, img_path='a',
                                                           sample_idx=1))['data_samples']
    assert sample.metainfo == {'img_path': 'a'}
    with pytest.raises(TypeError, match='meta_keys'):
        PackFaceInputs(meta_keys='img_path')
    with pytest.raises(ValueError, match='a.jpg.*visibility_mask|visibility_mask.*a.jpg'):
        PackFaceInputs()(dict(img=noise_face, visibility_mask=np.ones((7, 7)), img_path='a.jpg'))


def test_training_pipeline_from_config(noise_face):
    # How a dataset builds its pipeline under a Runner whose default scope is mmoaml.
    with DefaultScope.overwrite_default_scope('mmoaml'):
        pipeline = Compose([
            dict(type='MedicalMaskOcclusion', prob=1.0),
            dict(type='FaceAugmenter', crop_prob=1.0),
            dict(type='PackFaceInputs'),
        ])
    np.random.seed(0)
    packed = pipeline(dict(img=noise_face, gt_label=2, sample_idx=0))
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 112, 112)
    assert sample.metainfo['occluder']['type'] == 'MedicalMaskOcclusion'
    vis = sample.gt_visibility[0].numpy()
    prior = face_region_prior((112, 112))
    assert ((vis == 0) | (vis == prior)).all() and (vis == 0).sum() > (prior == 0).sum()
