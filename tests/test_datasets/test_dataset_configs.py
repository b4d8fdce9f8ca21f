"""The base dataset configs build working datasets and pipelines on tiny real files."""
import copy
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmoaml.fileio import dump_verification_bin, encode_image, write_face_recordio
from mmoaml.registry import DATA_SAMPLERS, DATASETS

CFG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs', '_base_', 'datasets')


def _face(seed):
    return np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)


def _build(dataset_cfg, data_root):
    cfg = copy.deepcopy(dataset_cfg)
    cfg['data_root'] = str(data_root)
    with DefaultScope.overwrite_default_scope('mmoaml'):
        return DATASETS.build(cfg)


def _check_packed(packed, shape=(3, 112, 112)):
    assert tuple(packed['inputs'].shape) == shape
    vis = packed['data_samples'].gt_visibility
    assert tuple(vis.shape) == (1, ) + shape[1:] and 0 <= vis.min() and vis.max() <= 1


def _rec_pack(root, identities=8, per_id=4):
    samples = [(encode_image(_face(i * per_id + j), '.jpg'), i) for i in range(identities)
               for j in range(per_id)]
    write_face_recordio(str(root / 'train.rec'), str(root / 'train.idx'), samples)


@pytest.mark.parametrize('name', ['casia_webface_rec', 'casia_webface_folder'])
def test_training_configs(tmp_path, name):
    cfg = Config.fromfile(f'{CFG_DIR}/{name}.py')
    assert cfg.num_classes == 10572
    if name == 'casia_webface_rec':
        _rec_pack(tmp_path)
    else:
        for i in range(8):
            (tmp_path / f'{i:05d}').mkdir()
            for j in range(4):
                (tmp_path / f'{i:05d}' / f'{j}.jpg').write_bytes(
                    encode_image(_face(i * 4 + j), '.jpg'))
    loader = cfg.train_dataloader
    ds = _build(loader.dataset, tmp_path)
    assert len(ds) == 32 and len(ds.metainfo['classes']) == 8
    packed = ds[5]
    _check_packed(packed)
    assert packed['data_samples'].gt_label.item() == 1
    sampler_cfg = dict(loader.sampler, batch_size=8)
    with DefaultScope.overwrite_default_scope('mmoaml'):
        sampler = DATA_SAMPLERS.build(sampler_cfg, default_args=dict(dataset=ds, seed=0))
    first = list(sampler)[:8]
    labels = ds.get_gt_labels()[first]
    assert sorted(np.unique(labels, return_counts=True)[1].tolist()) == [4, 4]


def test_verification_config(tmp_path):
    cfg = Config.fromfile(f'{CFG_DIR}/verification_bins.py')
    names = []
    for loader in cfg.val_dataloader:
        ann = loader.dataset.ann_file
        dump_verification_bin(str(tmp_path / ann), [encode_image(_face(k), '.jpg')
                                                     for k in range(4)], [True, False])
        ds = _build(loader.dataset, tmp_path)
        names.append(ds.metainfo['name'])
        _check_packed(ds[3])
    assert names == ['lfw', 'cfp_fp', 'agedb_30', 'calfw', 'cplfw']
    assert cfg.val_evaluator.type == 'FaceVerificationMetric'


def test_occlusion_stream_config(tmp_path):
    """Default stream: CASIA faces with a synthetic occluder (public data only)."""
    cfg = Config.fromfile(f'{CFG_DIR}/occluded_faces.py')
    hook = cfg.custom_hooks[0]
    assert hook.type == 'OcclusionBatchHook'
    assert hook.clean_loader.batch_size / (hook.occluded_loader.batch_size +
                                          hook.clean_loader.batch_size) == hook.clean_ratio
    casia_root = tmp_path / 'casia'
    casia_root.mkdir()
    _rec_pack(casia_root, identities=2, per_id=2)
    occluded = _build(hook.occluded_loader.dataset, casia_root)[0]
    _check_packed(occluded)
    vis = occluded['data_samples'].gt_visibility[0].numpy()
    assert 0 < vis.mean() < 1  # the occluder hides part of the face
    _check_packed(_build(hook.clean_loader.dataset, casia_root)[0])


def test_private_occlusion_stream_config(tmp_path):
    """Option: a private occluded-face set with masks (images/<id>/<name>, masks/<id>/<name>)."""
    hook = Config.fromfile(f'{CFG_DIR}/occluded_faces_private.py').private_occlusion_hook
    occ_root = tmp_path / 'occ'
    for sub in ('images/a', 'masks/a'):
        (occ_root / sub).mkdir(parents=True)
    (occ_root / 'images/a/0.jpg').write_bytes(encode_image(_face(0), '.jpg'))
    mask = np.zeros((112, 112), np.uint8)
    mask[20:60] = 255
    (occ_root / 'masks/a/0.png').write_bytes(encode_image(mask, '.png'))
    packed = _build(hook.occluded_loader.dataset, occ_root)[0]
    _check_packed(packed)
    vis = packed['data_samples'].gt_visibility[0].numpy()
    # FaceAugmenter may crop (zeroing) or flip (rows unchanged); never marks new pixels visible.
    assert vis[60:].max() == 0 and vis[:20].max() == 0
    clean_root = tmp_path / 'clean'
    clean_root.mkdir()
    _rec_pack(clean_root, identities=2, per_id=2)
    _check_packed(_build(hook.clean_loader.dataset, clean_root)[0])
