"""Every shipped experiment config loads and builds: model, datasets on tiny stand-in files,
hooks, optimizer wrapper and schedulers; the CASIA configs carry the report's settings."""
import copy
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmoaml.datasets.samplers.pk_sampler import check_pk_batch_size
from mmoaml.fileio import (dump_verification_bin, encode_image, masks_path_for,
                           save_visibility_masks, write_face_recordio)
from mmoaml.registry import DATA_SAMPLERS, DATASETS, HOOKS, MODELS, PARAM_SCHEDULERS

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob('*.py'))
SIZE = 112
# Stand-in training sets: 64 identities x 4 images, enough for one PK batch of 256.
IDENTITIES, PER_ID = 64, 4
# The CASIA-WebFace experiments (OAML technical report; docs/reference.md#training-recipe).
CASIA = ('oaml_ir50.py', 'oaml_ir101.py', 'adaface_ir50.py', 'adaface_ir101.py')
# Trainable parameters of IResNet + FaceEmbeddingNeck at 112x112
# (docs/reference.md#parameter-counts-and-macs).
BACKBONE_NECK_PARAMS = {50: 43_585_600, 100: 65_150_912}
STANDARD_SETS = ['lfw', 'cfp_fp', 'agedb_30', 'calfw', 'cplfw']
OCCLUDED_SETS = ['lfw_mask_probe', 'lfw_mask_both', 'lfw_niqab_probe', 'lfw_sunglasses_probe']


def test_every_top_level_config_is_covered():
    assert set(CASIA) <= set(CONFIGS)


_FACES = [encode_image(np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), np.uint8),
                       '.jpg') for i in range(4)]


def _write_folder(root: Path, identities: int, per_id: int, mask_dir=None):
    for i in range(identities):
        (root / f'id{i:03d}').mkdir(parents=True, exist_ok=True)
        for j in range(per_id):
            (root / f'id{i:03d}' / f'{j}.jpg').write_bytes(_FACES[j % len(_FACES)])
            if mask_dir is not None:
                (mask_dir / f'id{i:03d}').mkdir(parents=True, exist_ok=True)
                mask = np.full((SIZE, SIZE), 255, np.uint8)
                mask[SIZE // 2:] = 0
                (mask_dir / f'id{i:03d}' / f'{j}.png').write_bytes(encode_image(mask, '.png'))


def _stand_in(dataset_cfg: dict, tmp_path: Path) -> dict:
    """The dataset config pointed at tiny files of the layout its type reads."""
    cfg = copy.deepcopy(dataset_cfg)
    kind = cfg['type']
    root = tmp_path / f'{kind}_{len(list(tmp_path.iterdir()))}'
    root.mkdir()
    cfg['data_root'] = str(root)
    if kind == 'MXFaceDataset':
        samples = [(_FACES[k % len(_FACES)], k // PER_ID) for k in range(IDENTITIES * PER_ID)]
        write_face_recordio(str(root / cfg.get('rec_file', 'train.rec')),
                            str(root / cfg.get('idx_file', 'train.idx')), samples)
    elif kind == 'FaceFolderDataset':
        assert not cfg.get('ann_file'), 'stand-in supports folder scans only'
        img_root = root / (cfg.get('data_prefix') or {}).get('img_path', '')
        _write_folder(img_root, IDENTITIES, PER_ID)
    elif kind == 'OccludedFaceDataset':
        _write_folder(root / cfg.get('img_dir', 'images'), 10, PER_ID,
                      mask_dir=root / cfg.get('mask_dir', 'masks'))
    elif kind == 'VerificationBinDataset':
        path = root / cfg['ann_file']
        dump_verification_bin(str(path), _FACES * 2, [True, False, True, False])
        mask = np.full((8, SIZE, SIZE), 255, np.uint8)
        mask[1::2, SIZE // 2:] = 0
        save_visibility_masks(masks_path_for(str(path)), mask)
    else:
        pytest.fail(f'no stand-in files for dataset type {kind}: add them to this test')
    return cfg


def _check_sample(dataset, index=0):
    packed = dataset[index]
    assert tuple(packed['inputs'].shape) == (3, SIZE, SIZE)
    assert packed['inputs'].dtype == torch.uint8
    assert tuple(packed['data_samples'].gt_visibility.shape) == (1, SIZE, SIZE)
    return packed


def _eval_loaders(cfg):
    """The distinct validation and test loader configs (test often repeats val)."""
    distinct = []
    for key in ('val_dataloader', 'test_dataloader'):
        loaders = cfg.get(key) or []
        for loader in loaders if isinstance(loaders, list) else [loaders]:
            if loader not in distinct:
                distinct.append(loader)
    return distinct


def _schedulers(cfg, optim_wrapper, epoch_length):
    schedulers = []
    for scheduler in copy.deepcopy(cfg.param_scheduler):
        if scheduler.pop('convert_to_iter_based', False):
            scheduler_type = PARAM_SCHEDULERS.get(scheduler.pop('type'))
            schedulers.append(scheduler_type.build_iter_from_epoch(
                optim_wrapper, epoch_length=epoch_length, **scheduler))
        else:
            schedulers.append(PARAM_SCHEDULERS.build(scheduler,
                                                     default_args=dict(optimizer=optim_wrapper)))
    return schedulers


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_model_datasets_hooks_and_schedulers(name, tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / name)
    # A resumed run re-parses the config text stored in the checkpoint's meta.
    assert Config.fromstring(cfg.pretty_text, '.py').to_dict() == cfg.to_dict()
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        with torch.device('meta'):  # real sizes (IR-101, 10,572 classes) without the memory
            model = MODELS.build(cfg.model)

        train = cfg.train_dataloader
        dataset = DATASETS.build(_stand_in(train.dataset, tmp_path))
        _check_sample(dataset)
        sampler = DATA_SAMPLERS.build(train.sampler, default_args=dict(dataset=dataset, seed=0))
        assert len(sampler) % train.batch_size == 0
        for loader in _eval_loaders(cfg):
            _check_sample(DATASETS.build(_stand_in(loader.dataset, tmp_path)), index=1)

        hooks = [HOOKS.build(copy.deepcopy(h)) for h in cfg.default_hooks.values()]
        for hook_cfg in cfg.get('custom_hooks', []):
            hook_cfg = copy.deepcopy(hook_cfg)
            if hook_cfg['type'] == 'OcclusionBatchHook':
                hooks.append(_run_occlusion_hook(hook_cfg, tmp_path))
            else:
                hooks.append(HOOKS.build(hook_cfg))
        assert len(hooks) == len(cfg.default_hooks) + len(cfg.get('custom_hooks', []))

        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        schedulers = _schedulers(cfg, optim_wrapper, epoch_length=len(sampler) // train.batch_size)
        assert len(schedulers) == len(cfg.param_scheduler)
        assert cfg.train_cfg.max_epochs >= 1


def _run_occlusion_hook(hook_cfg, tmp_path):
    """Build the hook as configured, then feed one batch from stand-in loaders in-process."""
    hook = HOOKS.build(copy.deepcopy(hook_cfg))
    for stream in ('occluded', 'clean'):
        if hook.loader_cfgs[stream].get('num_workers', 0) > 0:
            assert hook.loader_cfgs[stream]['persistent_workers'] is True
        loader = hook_cfg[f'{stream}_loader']
        loader['dataset'] = _stand_in(loader['dataset'], tmp_path)
        loader['num_workers'] = 0
    local = HOOKS.build(hook_cfg)
    local.before_train(SimpleNamespace(seed=0, _randomness_cfg={}))
    batch = dict(inputs=[], data_samples=[])
    local.before_train_iter(None, 0, batch)
    size = hook.loader_cfgs['occluded']['batch_size'] + hook.loader_cfgs['clean']['batch_size']
    assert len(batch['occ']['inputs']) == len(batch['occ']['data_samples']) == size
    return hook


@pytest.mark.parametrize('name', CONFIGS)
def test_worker_processes_stay_few(name):
    """Evaluation loaders run one set at a time without persistent workers; the training
    loaders (main and occlusion stream) keep theirs, since they are re-iterated every epoch."""
    cfg = Config.fromfile(CONFIG_DIR / name)
    eval_workers = 0
    for loader in _eval_loaders(cfg):
        assert not loader.get('persistent_workers', False)
        eval_workers = max(eval_workers, loader.get('num_workers', 0))
    assert eval_workers <= 2
    train_loaders = [cfg.train_dataloader] + [
        value for hook in cfg.get('custom_hooks', []) for value in hook.values()
        if isinstance(value, dict) and 'dataset' in value
    ]
    train_workers = sum(loader.get('num_workers', 0) for loader in train_loaders)
    assert train_workers + eval_workers <= 16  # per rank; was about 50 with persistent val
    check_pk_batch_size(cfg.train_dataloader)


# ------------------------------------------------------------------ the CASIA experiments


def _load(name):
    return Config.fromfile(CONFIG_DIR / name)


def _lr_at_epoch_starts(cfg, epoch_length):
    """lr of the first iteration of every epoch, stepping the schedulers as the Runner does."""
    with DefaultScope.overwrite_default_scope('mmoaml'):
        model = torch.nn.Linear(2, 2)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        schedulers = _schedulers(cfg, optim_wrapper, epoch_length)
    lrs = []
    with warnings.catch_warnings():
        # Only the schedule is simulated, no optimizer step: silence torch's call-order warning.
        warnings.filterwarnings('ignore', 'Detected call of', UserWarning)
        for _ in range(cfg.train_cfg.max_epochs):
            lrs.append(optim_wrapper.get_lr()['lr'][0])
            for _ in range(epoch_length):
                for scheduler in schedulers:
                    if not scheduler.by_epoch:
                        scheduler.step()
            for scheduler in schedulers:
                if scheduler.by_epoch:
                    scheduler.step()
    return lrs


@pytest.mark.parametrize('kind', ['oaml', 'adaface'])
def test_ir101_configs_are_the_ir50_ones_with_the_deeper_body(kind):
    ir50 = _load(f'{kind}_ir50.py').to_dict()
    ir101 = _load(f'{kind}_ir101.py').to_dict()
    assert ir50['model']['backbone']['depth'] == 50
    assert ir101['model']['backbone']['depth'] == 100
    ir50['model']['backbone']['depth'] = 100
    assert ir101 == ir50


@pytest.mark.parametrize('name', CASIA)
def test_report_settings(name):
    cfg = _load(name)
    oaml = name.startswith('oaml')
    depth = 100 if 'ir101' in name else 50
    assert cfg.model.backbone.depth == depth and cfg.model.adaface_head.num_classes == 10572
    with DefaultScope.overwrite_default_scope('mmoaml'), torch.device('meta'):
        model = MODELS.build(cfg.model)
    body = sum(p.numel() for n, p in model.named_parameters() if n.startswith(('backbone.',
                                                                               'neck.')))
    assert body == BACKBONE_NECK_PARAMS[depth]
    assert (model.qaconv_head is not None) == (model.occlusion_head is not None) == oaml
    assert model.loss_weights == (
        dict(loss_adaface=0.1, loss_qaconv_pair=0.9, loss_qaconv_triplet=0.9,
             loss_occlusion=0.1) if oaml else dict(loss_adaface=1.0))

    # PK batches of 64 identities x 4 images; medical masks on half the faces
    train = cfg.train_dataloader
    assert train.batch_size == train.sampler.batch_size == 256
    assert train.sampler.type == 'PKSampler' and train.sampler.num_instances == 4
    assert train.persistent_workers is True and train.num_workers > 0
    assert dict(type='MedicalMaskOcclusion', prob=0.5) in train.dataset.pipeline
    assert train.dataset.type == 'MXFaceDataset'

    # occlusion stream 80/20 (OAML only), resumable randomness everywhere
    hooks = {h.type: h for h in cfg.custom_hooks}
    assert 'IterationSeedHook' in hooks
    assert ('OcclusionBatchHook' in hooks) == oaml
    if oaml:
        occ = hooks['OcclusionBatchHook']
        assert occ.clean_ratio == 0.2
        assert (occ.occluded_loader.batch_size, occ.clean_loader.batch_size) == (32, 8)

    # SGD lr 0.1 at a total batch of 256, no weight decay on BN parameters
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'FiniteLossOptimWrapper'
    assert wrapper.optimizer == dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert cfg.auto_scale_lr == dict(base_batch_size=256, enable=False)
    with DefaultScope.overwrite_default_scope('mmoaml'), torch.device('meta'):
        groups = build_optim_wrapper(model, wrapper).optimizer.param_groups
    decay = {id(p): g['weight_decay'] for g in groups for p in g['params']}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            assert decay[id(param)] == (0.0 if isinstance(module, _BatchNorm) else 5e-4)

    # warm-up over the first epoch, x0.1 at epochs 14, 22, 26 of 28 (by hand)
    epoch_length = 5
    lrs = _lr_at_epoch_starts(cfg, epoch_length)
    assert lrs[0] == pytest.approx(0.1 * 0.01)
    expected = [0.1] * 13 + [0.01] * 8 + [1e-3] * 4 + [1e-4] * 2
    assert lrs[1:] == pytest.approx(expected, rel=1e-6)

    # validation: the five standard sets and the occluded LFW variants, after every epoch
    names = [Path(loader.dataset.ann_file).stem for loader in cfg.val_dataloader]
    assert names == STANDARD_SETS + OCCLUDED_SETS
    assert cfg.val_cfg.type == 'MultiValLoop' and cfg.train_cfg.val_interval == 1
    assert cfg.test_dataloader == cfg.val_dataloader
    best = cfg.default_hooks.checkpoint.save_best
    assert best == ('mean/combined/accuracy' if oaml else 'mean/adaface/accuracy')


@pytest.mark.parametrize('depth', ['ir50', 'ir101'])
def test_adaface_baseline_has_the_data_and_schedule_of_oaml(depth):
    oaml, ada = _load(f'oaml_{depth}.py'), _load(f'adaface_{depth}.py')
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                'val_dataloader', 'val_cfg', 'auto_scale_lr', 'randomness'):
        assert ada[key] == oaml[key], key
    assert ada.model.backbone == oaml.model.backbone
    assert ada.model.neck == oaml.model.neck
    # The same head; only its loss weight differs (AdaFace's whole loss vs OAML's 0.1 share).
    ada_head, oaml_head = dict(ada.model.adaface_head), dict(oaml.model.adaface_head)
    assert ada_head.pop('loss') == dict(type='CrossEntropyLoss', loss_weight=1.0)
    assert oaml_head.pop('loss') == dict(type='CrossEntropyLoss', loss_weight=0.1)
    assert ada_head == oaml_head
    assert ada.val_evaluator.score_types == ('adaface', )


def test_casia_occlusion_stream_needs_only_the_casia_pack():
    """The default occlusion stream: CASIA RecordIO with an occluder first in the pipeline (the
    occluder writes the mask), clean faces from the same pack; the private occluded-face set is
    the separate option oaml_ir50_occluded_private.py."""
    for name in ('oaml_ir50.py', 'oaml_ir101.py'):
        hook = next(h for h in _load(name).custom_hooks if h.type == 'OcclusionBatchHook')
        occluded, clean = hook.occluded_loader.dataset, hook.clean_loader.dataset
        assert occluded.type == clean.type == 'MXFaceDataset'
        assert occluded.data_root == clean.data_root == 'data/faces_webface_112x112'
        first = occluded.pipeline[0]
        assert first.type == 'RandomChoice' and sum(first.prob) == 1
        occluders = [t[0] for t in first.transforms]
        assert {o.type for o in occluders} == {'NiqabOcclusion', 'MedicalMaskOcclusion',
                                               'SunglassesOcclusion', 'RandomOcclusion'}
        assert all(o.get('prob', 1.0) == 1.0 for o in occluders)  # every face occluded
    private = _load('oaml_ir50_occluded_private.py')
    base = _load('oaml_ir50.py')
    hooks = {h.type: h for h in private.custom_hooks}
    assert set(hooks) == {'OcclusionBatchHook', 'IterationSeedHook'}
    occ = hooks['OcclusionBatchHook']
    assert occ.occluded_loader.dataset.type == 'OccludedFaceDataset'
    assert occ.occluded_loader.dataset.data_root == 'data/occluded_faces'
    assert (occ.occluded_loader.batch_size, occ.clean_loader.batch_size) == (32, 8)
    assert occ.clean_loader == base.custom_hooks[0].clean_loader
    for key in ('model', 'train_dataloader', 'val_dataloader', 'optim_wrapper',
                'param_scheduler'):
        assert private[key] == base[key], key
