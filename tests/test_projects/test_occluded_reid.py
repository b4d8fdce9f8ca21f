"""projects/occluded_reid: the SynthPerson generator, dataset, occluder and metric, and the
project's config (OAML around mmpretrain.ResNet on 128x64 people) built and run through
MMEngine's Runner for one short epoch and its test loop on a tiny set written here."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.models import ResNet

from mmoaml.models import OAML
from mmoaml.registry import DATASETS, TRANSFORMS
from projects.occluded_reid.occluded_reid import (HEIGHT, OCCLUDER_KINDS, WIDTH, make_person,
                                                  retrieval_metrics, write_synthperson)

CONFIG = (Path(__file__).resolve().parents[2] / 'projects' / 'occluded_reid' / 'configs' /
          'oaml_resnet18_synthperson.py')
NUM_TRAIN_IDS = 4


@pytest.fixture(scope='module')
def synthperson(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('synthperson')
    write_synthperson(str(root), num_train_ids=NUM_TRAIN_IDS, images_per_id=4, num_test_ids=3,
                      gallery_per_id=2, query_per_id=1, seed=0)
    return root


def test_generator_is_seeded_and_masks_follow_the_convention():
    img, vis, record = make_person(0, 3, 1)
    again, vis_again, _ = make_person(0, 3, 1)
    assert img.shape == (HEIGHT, WIDTH, 3) and img.dtype == np.uint8 and record == {}
    np.testing.assert_array_equal(img, again)
    np.testing.assert_array_equal(vis, vis_again)
    assert set(np.unique(vis)) == {0.0, 1.0} and 0.15 < vis.mean() < 0.6  # person, background
    assert not np.array_equal(img, make_person(0, 3, 2)[0])  # another image of the person
    occluded, occ_vis, record = make_person(0, 3, 1, occlude=OCCLUDER_KINDS)
    assert record['kind'] in OCCLUDER_KINDS
    assert (occ_vis <= vis).all() and occ_vis.sum() < vis.sum()
    changed = (occluded != img).any(2)
    assert not changed[occ_vis > 0].any()  # pixels still visible are untouched


def test_dataset_yields_gt_label_and_gt_visibility(synthperson):
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        train = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(synthperson),
                                    pipeline=[dict(type='PackFaceInputs')]))
        test = DATASETS.build(dict(cfg.test_dataloader[0].dataset, data_root=str(synthperson)))
        occluder = TRANSFORMS.build(dict(type='RandomPersonOcclusion', prob=1.0, seed=0))
    assert len(train) == NUM_TRAIN_IDS * 4 and len(train.metainfo['classes']) == NUM_TRAIN_IDS
    item = train[5]
    sample = item['data_samples']
    assert tuple(item['inputs'].shape) == (3, HEIGHT, WIDTH)
    assert int(sample.gt_label) == 1
    assert tuple(sample.gt_visibility.shape) == (1, HEIGHT, WIDTH)
    assert 0 < float(sample.gt_visibility.mean()) < 1
    # 3 test people: 2 gallery images, 1 query written clean and occluded.
    samples = [test[i]['data_samples'] for i in range(len(test))]
    roles = [(s.role, s.occluded) for s in samples]
    assert roles.count(('gallery', False)) == 6 and roles.count(('query', True)) == 3
    # The silhouette reaches gt_visibility unchanged; the occluder hides part of it.
    raw = train.load_sample(train.get_data_info(5))
    torch.testing.assert_close(sample.gt_visibility[0], torch.from_numpy(raw['visibility_mask']))
    occluded = occluder(dict(raw, visibility_mask=raw['visibility_mask'].copy()))
    assert occluded['visibility_mask'].sum() < raw['visibility_mask'].sum()
    assert occluded['occluder']['kind'] in OCCLUDER_KINDS


def test_retrieval_metrics_are_rank1_and_map():
    # Query 0 (person 0) finds its two gallery images at ranks 1 and 4: AP (1/1 + 2/4) / 2;
    # query 1 (person 1) its one image at rank 2: AP 1/2, and misses at rank 1.
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.3], [0.8, 0.7, 0.2, 0.75]])
    metrics = retrieval_metrics(scores, [0, 1], [0, 2, 0, 1])
    assert metrics['rank1'] == pytest.approx(50.0)
    assert metrics['mAP'] == pytest.approx(100 * (0.75 + 0.5) / 2)
    with pytest.raises(ValueError, match='at least one gallery image'):
        retrieval_metrics(scores, [0, 5], [0, 2, 0, 1])


def test_config_trains_and_tests_with_the_runner(synthperson, tmp_path):
    cfg = Config.fromfile(CONFIG)
    assert 'projects.occluded_reid.occluded_reid' in cfg.custom_imports.imports
    cfg.work_dir = str(tmp_path)
    cfg.model.adaface_head.num_classes = NUM_TRAIN_IDS
    cfg.train_dataloader.dataset.data_root = str(synthperson)
    cfg.test_dataloader[0].dataset.data_root = str(synthperson)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None  # like --no-validate
    for loader in (cfg.train_dataloader, cfg.test_dataloader[0]):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = cfg.train_dataloader.sampler.batch_size = 8
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert isinstance(model, OAML) and isinstance(model.backbone, ResNet)
    assert (model.qaconv_head.height, model.qaconv_head.width) == (16, 8)
    runner.train()
    assert runner.iter > 0
    metrics = runner.test()
    assert metrics['synthperson/num_gallery'] == 6
    for group in ('occluded', 'clean'):
        assert metrics[f'synthperson/{group}/num_queries'] == 3
        for score in ('embedding', 'qaconv', 'qaconv_gt', 'qaconv_none'):
            for key in ('rank1', 'mAP'):
                assert 0.0 <= metrics[f'synthperson/{group}/{score}/{key}'] <= 100.0
