"""check_data_files: every missing file of every loader in one error, with its source."""
import numpy as np
import pytest
from mmengine.config import Config

from mmoaml.fileio import dump_verification_bin, encode_image, write_face_recordio
from mmoaml.utils import check_data_files

FACE = encode_image(np.zeros((8, 8, 3), np.uint8), '.png')


def _cfg(root, **extra):
    """A config whose loaders use every dataset type, nested in wrappers, under ``root``."""
    casia = dict(type='MXFaceDataset', data_root=f'{root}/casia')
    return Config(dict(
        train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            casia,
            dict(type='RepeatDataset', times=2,
                 dataset=dict(type='FaceFolderDataset', data_root=f'{root}/own',
                              data_prefix=dict(img_path='train'), ann_file='list.txt')),
            dict(type='SynthFaceDataset', num_identities=4),
        ])),
        val_dataloader=[
            dict(dataset=dict(type='VerificationBinDataset', data_root=f'{root}/casia',
                              ann_file='lfw.bin')),
            dict(dataset=dict(type='VerificationBinDataset', data_root=f'{root}/occluded',
                              ann_file='lfw_mask_probe.bin')),
            dict(dataset=dict(type='VerificationBinDataset', data_root=f'{root}/occluded',
                              ann_file='lfw_niqab_probe.bin')),
        ],
        test_dataloader=dict(dataset=dict(type='VerificationBinDataset', data_root=f'{root}/x',
                                          ann_file='mine.bin')),
        custom_hooks=[dict(type='OcclusionBatchHook',
                           occluded_loader=dict(dataset=dict(type='OccludedFaceDataset',
                                                             data_root=f'{root}/private')),
                           clean_loader=dict(dataset=casia))],
        **extra))


def _message(cfg, stages=('train', 'val', 'test')):
    with pytest.raises(FileNotFoundError) as info:
        check_data_files(cfg, stages)
    return str(info.value)


def test_every_missing_file_is_listed_once_with_its_source(tmp_path):
    msg = _message(_cfg(tmp_path))
    casia = tmp_path / 'casia'
    assert msg.startswith('10 data file(s) missing for the train/val/test loaders')
    for path in (casia / 'train.rec', casia / 'train.idx', tmp_path / 'own' / 'train',
                 tmp_path / 'own' / 'list.txt', casia / 'lfw.bin',
                 tmp_path / 'occluded' / 'lfw_mask_probe.bin', tmp_path / 'x' / 'mine.bin',
                 tmp_path / 'private' / 'images', tmp_path / 'private' / 'masks'):
        assert msg.count(f'- {path} (') == 1, path
    # the rec is read by the main stream and the hook's clean loader
    assert f'{casia}/train.rec (file; train_dataloader, custom_hooks.0.clean_loader)' in msg
    assert "InsightFace's data zoo" in msg and 'folder_to_rec.py' in msg
    assert "come with InsightFace's 'faces_webface_112x112' pack" in msg
    # one command for both occluded variants, from the config's own lfw.bin
    assert (f'make_occluded_bin.py {casia}/lfw.bin --out-dir {tmp_path}/occluded '
            '--protocols mask_probe niqab_probe') in msg
    assert f'folder_to_bin.py FOLDER {tmp_path}/x/mine.bin' in msg
    assert 'no public data set or tool provides it' in msg
    assert 'SynthFace' not in msg  # rendered in memory: nothing to check


def test_stages_select_loaders_and_present_files_pass(tmp_path):
    cfg = _cfg(tmp_path)
    msg = _message(cfg, stages=('test', ))
    assert msg.startswith('1 data file(s) missing for the test loaders') and 'mine.bin' in msg
    (tmp_path / 'x').mkdir()
    dump_verification_bin(str(tmp_path / 'x' / 'mine.bin'), [FACE] * 2, [True])
    check_data_files(cfg, stages=('test', ))
    (tmp_path / 'casia').mkdir()
    write_face_recordio(str(tmp_path / 'casia' / 'train.rec'),
                        str(tmp_path / 'casia' / 'train.idx'), [(FACE, 0)])
    train_msg = _message(cfg, stages=('train', ))
    assert 'train.rec' not in train_msg and 'own/train' in train_msg
    with pytest.raises(ValueError, match='unknown stages'):
        check_data_files(cfg, stages=('training', ))


def test_synthface_files_point_at_the_synthface_tools(tmp_path):
    root = f'{tmp_path}/synthface'
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(type='FaceFolderDataset', data_root=root,
                                           data_prefix=dict(img_path='train'))),
        test_dataloader=[dict(dataset=dict(type='VerificationBinDataset',
                                           data_root=f'{root}/val',
                                           ann_file='synthface_clean_niqab_probe.bin'))]))
    msg = _message(cfg)
    assert msg.count('make_synthface.py') == 1  # one group: same data root
    assert f'make_synthface.py {root}' in msg and 'demo_synthface.py' in msg


def test_shipped_casia_config_needs_only_public_data(tmp_path):
    from pathlib import Path
    cfg = Config.fromfile(Path(__file__).parents[2] / 'configs' / 'oaml_ir50.py')
    msg = _message(cfg, stages=('train', 'val'))
    assert 'occluded_faces' not in msg  # the default occlusion stream is CASIA + occluders
    assert msg.startswith('11 data file(s) missing')
