"""OAML recognizer: wiring, gradient rules, occlusion supervision, predict, configs, Runner."""
import copy
import itertools

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

from mmoaml.datasets.transforms import PackFaceInputs
from mmoaml.engine import FiniteLossOptimWrapper, OcclusionBatchHook
from mmoaml.models import (OAML, FaceDataPreprocessor, OcclusionLoss, PairwiseMatchingLoss,
                           SoftmaxTripletLoss)
from mmoaml.registry import MODELS

SCOPE = 'mmoaml'
SIZE = 32  # tiny faces: IR-18 body map 2x2x512, stage-3 map 4x4x256
GROUPS = ('backbone', 'neck', 'adaface_head', 'qaconv_head', 'occlusion_head')
_run_ids = itertools.count()


def _tiny_cfg(level=-1, **overrides):
    """OAML on IR-18 at 32x32; ``level`` -1 = 2x2x512 body map, 0 = 4x4x256 stage-3 map."""
    body = level == -1
    cfg = dict(
        type='OAML',
        _scope_=SCOPE,
        backbone=dict(type='IResNet', depth=18, input_size=SIZE,
                      out_indices=(3, ) if body else (2, 3)),
        neck=dict(type='FaceEmbeddingNeck', in_channels=512, feat_size=2, embed_dim=32),
        adaface_head=dict(type='AdaFaceHead', embed_dim=32, num_classes=6),
        qaconv_head=dict(type='QAConvHead', num_features=512 if body else 256,
                         height=2 if body else 4, width=2 if body else 4),
        occlusion_head=dict(type='OcclusionHead', in_channels=512 if body else 256,
                            mid_channels=16),
        feature_level=level)
    cfg.update(overrides)
    return cfg


def _tiny(level=-1, seed=0, **overrides):
    torch.manual_seed(seed)
    return MODELS.build(_tiny_cfg(level, **overrides))


def _samples(n, labels=None, size=SIZE, seed=0):
    """Data samples with identities and a visibility mask (lower half occluded for odd i)."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        sample = DataSample()
        if labels is not None:
            sample.set_gt_label(labels[i])
        mask = torch.rand(1, size, size, generator=generator).round()
        if i % 2:
            mask[:, size // 2:] = 0
        sample.set_field(mask, 'gt_visibility')
        sample.set_metainfo(dict(sample_idx=i, pair_idx=i // 2, issame=True))
        samples.append(sample)
    return samples


def _images(n, size=SIZE, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _batch(batch=4, occ=0, size=SIZE, seed=0):
    """A raw PK batch (2 images per identity) as the loader gives it, optionally with 'occ'."""
    data = dict(
        inputs=list(_images(batch, size, seed)),
        data_samples=_samples(batch, [i // 2 for i in range(batch)], size, seed))
    if occ:
        data['occ'] = dict(
            inputs=list(_images(occ, size, seed + 1)), data_samples=_samples(occ, None, size,
                                                                             seed + 1))
    return data


def _wrapper(model, lr):
    """A finite-loss SGD wrapper with its own message hub (its skip counter starts at 0)."""
    wrapper = FiniteLossOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=lr))
    wrapper.message_hub = MessageHub.get_instance(f'oaml_test_{next(_run_ids)}')
    return wrapper


def _loss(model, data):
    return model(**model.data_preprocessor(copy.deepcopy(data), True), mode='loss')


class _Capture:
    """Record the positional inputs and output of a module's forward calls."""

    def __init__(self, module):
        self.calls = []
        self.handle = module.register_forward_hook(
            lambda mod, args, out: self.calls.append((args, out)))


def _reached(model, loss):
    """Names of the parameter groups that receive a non-zero gradient from ``loss``."""
    reached = set()
    for group in GROUPS:
        module = getattr(model, group)
        if module is None:
            continue
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        if any(g is not None and bool(g.abs().sum() > 0) for g in grads):
            reached.add(group)
    return reached


def _block_mean(mask, grid):
    """Area average of [N, 1, H, W] masks over a ``grid`` x ``grid`` grid, by numpy loops."""
    m = mask.numpy()[:, 0]
    cell = m.shape[1] // grid
    out = np.zeros((m.shape[0], 1, grid, grid))
    for i in range(grid):
        for j in range(grid):
            out[:, 0, i, j] = m[:, i * cell:(i + 1) * cell, j * cell:(j + 1) * cell].mean((1, 2))
    return torch.from_numpy(out).float()


# --------------------------------------------------------------------------- gradient rules


@pytest.mark.parametrize('supervision, occ', [('occ_batch', 2), ('main', 0), ('both', 2)])
def test_gradient_rules(supervision, occ):
    model = _tiny(occlusion_supervision=supervision)
    assert model.visibility_weighting
    losses = _loss(model, _batch(occ=occ))
    # AdaFace reaches the backbone (and its own neck/head), nothing of the matching branches.
    assert _reached(model, losses['loss_adaface']) == {'backbone', 'neck', 'adaface_head'}
    # QAConv losses train the backbone and the matcher; nothing reaches the occlusion head
    # although the matches are weighted by its output.
    for key in ('loss_qaconv_pair', 'loss_qaconv_triplet'):
        assert _reached(model, losses[key]) == {'backbone', 'qaconv_head'}, key
    # The occlusion loss reaches only the occlusion head.
    assert _reached(model, losses['loss_occlusion']) == {'occlusion_head'}


def test_qaconv_is_weighted_by_the_detached_occlusion_output():
    model = _tiny()
    occ_head, qaconv = _Capture(model.occlusion_head), _Capture(model.qaconv_head)
    _loss(model, _batch())
    (occ_input, ), visibility = occ_head.calls[0]
    feats, match_vis = qaconv.calls[0][0]
    assert not occ_input.requires_grad and feats.requires_grad  # head reads F.detach()
    assert torch.equal(match_vis, visibility.detach()) and not match_vis.requires_grad


# --------------------------------------------------------------------------- loss values


def _weighted_heads(adaface, qaconv, occlusion):
    """Head configs of ``_tiny_cfg`` whose loss configs carry the given weights."""
    cfg = _tiny_cfg()
    return dict(
        adaface_head=dict(cfg['adaface_head'],
                          loss=dict(type='CrossEntropyLoss', loss_weight=adaface)),
        qaconv_head=dict(cfg['qaconv_head'], losses=dict(
            pair=dict(type='PairwiseMatchingLoss', loss_weight=qaconv),
            triplet=dict(type='SoftmaxTripletLoss', margin=1.0, triplet_weight=0.5,
                         loss_weight=qaconv))),
        occlusion_head=dict(cfg['occlusion_head'],
                            loss=dict(type='OcclusionLoss', loss_weight=occlusion)))


def test_loss_terms_are_weighted_and_only_losses_are_summed():
    model = _tiny(**_weighted_heads(adaface=0.3, qaconv=0.7, occlusion=0.2))
    adaface, qaconv, occ_head = (_Capture(model.adaface_head), _Capture(model.qaconv_head),
                                 _Capture(model.occlusion_head))
    losses = _loss(model, _batch())
    labels = torch.tensor([0, 0, 1, 1])

    logits = adaface.calls[0][1].detach()
    picked = logits[torch.arange(4), labels]
    cross_entropy = (torch.logsumexp(logits, dim=1) - picked).mean()
    torch.testing.assert_close(losses['loss_adaface'].detach(), 0.3 * cross_entropy)

    scores = qaconv.calls[0][1].detach()
    torch.testing.assert_close(losses['loss_qaconv_pair'].detach(),
                               0.7 * PairwiseMatchingLoss()(scores, labels))
    torch.testing.assert_close(losses['loss_qaconv_triplet'].detach(),
                               0.7 * SoftmaxTripletLoss(1.0, 0.5)(scores, labels))
    torch.testing.assert_close(losses['qaconv_acc'],
                               PairwiseMatchingLoss().accuracy(scores, labels))

    # Main-stream supervision (no occlusion batch): MSE against the block-averaged pixel masks.
    pred = occ_head.calls[0][1].detach()
    gt = torch.stack([s.gt_visibility for s in _batch()['data_samples']])
    mse = ((pred - _block_mean(gt, 2))**2).mean()
    torch.testing.assert_close(losses['occ_mse'], mse)
    torch.testing.assert_close(losses['loss_occlusion'].detach(), 0.2 * mse)
    torch.testing.assert_close(losses['visible_fraction'], pred.mean())

    assert {k for k in losses if 'loss' in k} == {
        'loss_adaface', 'loss_qaconv_pair', 'loss_qaconv_triplet', 'loss_occlusion'}
    total, log_vars = model.parse_losses(losses)
    expected = sum(float(v.detach()) for k, v in losses.items() if 'loss' in k)
    assert abs(float(total.detach()) - expected) < 1e-5
    assert {'feat_norm', 'qaconv_acc', 'occ_mse', 'visible_fraction'} <= set(log_vars)


def test_auto_uses_the_occlusion_batch_when_it_arrives():
    model = _tiny()
    backbone, occ_head = _Capture(model.backbone), _Capture(model.occlusion_head)
    data = _batch(occ=3)
    losses = _loss(model, data)
    assert len(backbone.calls) == 2 and backbone.calls[1][0][0].shape[0] == 3
    occ_pred = occ_head.calls[1][1].detach()
    gt = torch.stack([s.gt_visibility for s in data['occ']['data_samples']])
    torch.testing.assert_close(losses['occ_mse'], ((occ_pred - _block_mean(gt, 2))**2).mean())


def test_both_averages_main_and_occlusion_batches_per_sample():
    model = _tiny(occlusion_supervision='both')
    occ_head = _Capture(model.occlusion_head)
    data = _batch(batch=4, occ=2)
    losses = _loss(model, data)
    main_gt = torch.stack([s.gt_visibility for s in data['data_samples']])
    occ_gt = torch.stack([s.gt_visibility for s in data['occ']['data_samples']])
    main_mse = ((occ_head.calls[0][1].detach() - _block_mean(main_gt, 2))**2).mean()
    occ_mse = ((occ_head.calls[1][1].detach() - _block_mean(occ_gt, 2))**2).mean()
    torch.testing.assert_close(losses['occ_mse'], (4 * main_mse + 2 * occ_mse) / 6)


def test_occ_batch_supervision_without_the_batch_computes_no_occlusion_loss(monkeypatch):
    messages = []
    monkeypatch.setattr('mmoaml.models.recognizers.oaml.print_log',
                        lambda msg, **kwargs: messages.append(msg))
    model = _tiny(occlusion_supervision='occ_batch')
    for _ in range(2):
        losses = _loss(model, _batch())
        assert 'loss_occlusion' not in losses and 'occ_mse' not in losses
        assert 'loss_qaconv_pair' in losses  # still weighted by the (occ-batch trained) head
    assert sum('no occlusion batch arrived' in m for m in messages) == 1  # warned once


def test_main_supervision_ignores_an_arriving_occlusion_batch():
    model = _tiny(occlusion_supervision='main')
    backbone = _Capture(model.backbone)
    losses = _loss(model, _batch(occ=2))
    assert len(backbone.calls) == 1 and 'loss_occlusion' in losses


def test_absent_occlusion_batch_and_adaface_only_model():
    model = _tiny(qaconv_head=None, occlusion_head=None, occlusion_supervision=None,
                  adaface_head=dict(_tiny_cfg()['adaface_head'],
                                    loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
    assert not model.visibility_weighting
    losses = _loss(model, _batch(occ=2))  # an occ batch is simply not used
    assert set(losses) == {'loss_adaface', 'feat_norm'}
    model.eval()
    with torch.no_grad():
        out = model.test_step(_batch(batch=2))
    assert set(out[0].keys()) >= {'embedding'} and 'feature_map' not in out[0]
    assert 'visibility' not in out[0]


def test_non_finite_features_give_a_non_finite_loss_and_a_skipped_update():
    model = _tiny()
    data = model.data_preprocessor(_batch(), True)
    data['inputs'][0, 0, 0, 0] = float('nan')
    losses = model(**data, mode='loss')  # no error from the visibility-weighted matcher
    for key in ('loss_adaface', 'loss_qaconv_pair', 'loss_qaconv_triplet'):
        assert torch.isnan(losses[key]), key  # not patched to a finite number
    wrapper = _wrapper(model, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    bad = _batch()
    bad['inputs'][0] = bad['inputs'][0].float().fill_(float('nan'))
    model.train_step(bad, wrapper)
    assert wrapper.skipped_updates == 1
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


# --------------------------------------------------------------------------- weighting switch


def test_unsupervised_occlusion_head_never_weights_qaconv(monkeypatch):
    messages = []
    monkeypatch.setattr('mmoaml.models.recognizers.oaml.print_log',
                        lambda msg, **kwargs: messages.append(msg))
    model = _tiny(occlusion_supervision=None)
    assert not model.visibility_weighting
    assert any('weighting is off' in m and 'occlusion_supervision=None' in m for m in messages)
    assert any('no loss trains it' in m for m in messages)
    qaconv, occ_head = _Capture(model.qaconv_head), _Capture(model.occlusion_head)
    losses = _loss(model, _batch(occ=2))
    assert qaconv.calls[0][0][1] is None and not occ_head.calls
    assert 'loss_occlusion' not in losses
    model.eval()
    with torch.no_grad():
        out = model.test_step(_batch(batch=2))
    assert 'visibility' not in out[0] and 'feature_map' in out[0]


def test_weighting_can_be_disabled_and_cannot_be_forced_without_supervision():
    model = _tiny(visibility_weighting=False)
    qaconv = _Capture(model.qaconv_head)
    losses = _loss(model, _batch())
    assert qaconv.calls[0][0][1] is None and 'loss_occlusion' in losses  # head still trained
    with pytest.raises(ValueError, match='occlusion_supervision=None'):
        _tiny(occlusion_supervision=None, visibility_weighting=True)
    with pytest.raises(ValueError, match='no occlusion_head'):
        _tiny(occlusion_head=None, visibility_weighting=True)


# --------------------------------------------------------------------------- predict


def test_predict_flip_fusion_map_and_visibility_by_hand():
    model = _tiny().eval()
    data = model.data_preprocessor(_batch(batch=3), False)
    x = data['inputs']
    with torch.no_grad():
        plain = model(x, mode='tensor')
        flipped = model(torch.flip(x, dims=[3]), mode='tensor')
        out = model(x, data['data_samples'], mode='predict')

    e1, n1 = plain['embedding'].numpy(), plain['norm'].numpy()
    e2, n2 = flipped['embedding'].numpy(), flipped['norm'].numpy()
    fused = e1 * n1 + e2 * n2
    fused /= np.sqrt((fused**2).sum(axis=1, keepdims=True))
    fmap = plain['feature_map'].numpy()
    unit_map = fmap / np.sqrt((fmap**2).sum(axis=1, keepdims=True))
    for i, sample in enumerate(out):
        assert sample.embedding.device.type == 'cpu' and sample.embedding.shape == (32, )
        np.testing.assert_allclose(sample.embedding.numpy(), fused[i], atol=1e-5)
        assert sample.feature_map.dtype == torch.float16 and sample.feature_map.shape == (512, 2,
                                                                                          2)
        np.testing.assert_allclose(sample.feature_map.float().numpy(), unit_map[i], atol=2e-3)
        assert sample.visibility.shape == (1, 2, 2)
        np.testing.assert_allclose(sample.visibility.numpy(), plain['visibility'][i].numpy(),
                                   atol=1e-6)
        # Ground truth and metainfo of the input samples are kept.
        assert sample.pair_idx == i // 2 and sample.issame is True
        assert 'gt_visibility' in sample and int(sample.gt_label) == i // 2


def test_predict_without_data_samples_creates_them():
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE), mode='predict')
    assert len(out) == 2 and all(isinstance(s, DataSample) for s in out)


# --------------------------------------------------------------------------- feature levels


@pytest.mark.parametrize('level, shape', [(-1, (512, 2, 2)), (0, (256, 4, 4))])
def test_both_feature_levels_train_and_predict(level, shape):
    model = _tiny(level)
    qaconv = _Capture(model.qaconv_head)
    wrapper = _wrapper(model, lr=0.01)
    before = {g: [p.detach().clone() for p in getattr(model, g).parameters()] for g in GROUPS}
    log_vars = model.train_step(_batch(occ=2), wrapper)
    assert tuple(qaconv.calls[0][0][0].shape[1:]) == shape
    assert torch.isfinite(log_vars['loss'])
    for group in GROUPS:
        after = list(getattr(model, group).parameters())
        assert any(not torch.equal(b, a) for b, a in zip(before[group], after)), group
    model.eval()
    with torch.no_grad():
        out = model.test_step(_batch(batch=2))
    assert tuple(out[0].feature_map.shape) == shape
    assert tuple(out[0].visibility.shape) == (1, *shape[1:])
    with torch.no_grad():
        feats = model(model.data_preprocessor(_batch(batch=2))['inputs'], mode='tensor')
    assert set(feats) == {'embedding', 'norm', 'feature_map', 'visibility'}
    assert tuple(feats['feature_map'].shape[1:]) == shape


def test_feature_level_mismatches_name_the_config_keys():
    with pytest.raises(ValueError, match=r'qaconv_head\.num_features=512'):
        _tiny(level=-1, backbone=dict(type='IResNet', depth=18, input_size=SIZE,
                                      out_indices=(2, 3)), feature_level=0)
    with pytest.raises(ValueError, match=r'occlusion_head\.in_channels=512'):
        _tiny(level=0, occlusion_head=dict(type='OcclusionHead', in_channels=512))
    with pytest.raises(ValueError, match=r'backbone\.out_indices'):
        _tiny(level=-1, feature_level=1)
    # IResNet declares its map sizes, so the grid is checked at build time too.
    with pytest.raises(ValueError, match=r'qaconv_head\.num_features/height/width'):
        _tiny(qaconv_head=dict(type='QAConvHead', num_features=512, height=7, width=7))


class _UndeclaredBackbone(torch.nn.Module):
    """A backbone that declares neither channels nor sizes of its maps."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 512, kernel_size=16, stride=16)

    def forward(self, x):
        return (self.conv(x), )


def test_undeclared_maps_are_checked_once_at_the_first_forward():
    model = _tiny(backbone=_UndeclaredBackbone(),
                  qaconv_head=dict(type='QAConvHead', num_features=512, height=7, width=7))
    with pytest.raises(ValueError, match=r'qaconv_head\.num_features/height/width'):
        _loss(model, _batch())
    model = _tiny(backbone=_UndeclaredBackbone())
    sizes = _Capture(model.qaconv_head)
    _loss(model, _batch())
    assert model._wiring_checked and tuple(sizes.calls[0][0][0].shape[1:]) == (512, 2, 2)


@pytest.mark.parametrize('overrides, error, message', [
    (dict(occlusion_supervision='sometimes'), ValueError, 'occlusion_supervision must be'),
    (dict(occlusion_head=None, occlusion_supervision='main'), ValueError,
     'needs an occlusion_head'),
    (_weighted_heads(adaface=0.1, qaconv=0.9, occlusion=0.0), ValueError,
     'loss.loss_weight must be > 0'),
    (dict(qaconv_head=dict(_tiny_cfg()['qaconv_head'],
                           losses=[dict(type='PairwiseMatchingLoss')])), TypeError, 'losses'),
    (dict(visibility_weighting='yes'), ValueError, 'visibility_weighting'),
    (dict(neck=None), ValueError, 'neck is required'),
])
def test_bad_configurations_raise(overrides, error, message):
    with pytest.raises(error, match=message):
        _tiny(**overrides)


def test_missing_labels_or_masks_raise():
    model = _tiny()
    data = _batch()
    del data['data_samples'][1].gt_label
    with pytest.raises(ValueError, match=r'data_samples\[1\] has no gt_label'):
        _loss(model, data)
    data = _batch(occ=2)
    del data['occ']['data_samples'][0].gt_visibility
    with pytest.raises(ValueError, match=r'occ_data_samples\[0\] has no gt_visibility'):
        _loss(model, data)


# --------------------------------------------------------------------------- building


def test_defaults_and_build_from_a_foreign_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cfg = _tiny_cfg()
        cfg.pop('_scope_')
        cfg['type'] = 'mmoaml.OAML'  # nested mmoaml types must still resolve
        model = MODELS.build(cfg)
    assert isinstance(model, OAML)
    assert isinstance(model.data_preprocessor, FaceDataPreprocessor)
    assert not model.data_preprocessor.to_rgb
    assert isinstance(model.occlusion_head.loss_module, OcclusionLoss)
    assert set(model.qaconv_head.losses) == {'pair', 'triplet'}
    assert model.loss_weights == dict(loss_adaface=0.1, loss_qaconv_pair=0.9,
                                      loss_qaconv_triplet=0.9, loss_occlusion=0.1)
    assert model.occlusion_supervision == 'auto' and model.feature_level == -1


def test_oaml_ir50_config_train_and_predict_steps():
    """The shipped IR-50 config at 112x112 (the only IR-50 test: a few seconds on CPU)."""
    cfg = Config.fromfile('configs/_base_/models/oaml_ir50.py')
    cfg.model['_scope_'] = SCOPE
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert model.adaface_head.num_classes == 10572 and model.visibility_weighting
    assert not model.data_preprocessor.to_rgb
    wrapper = _wrapper(model, lr=0.01)
    occ_head_before = [p.detach().clone() for p in model.occlusion_head.parameters()]
    log_vars = model.train_step(_batch(batch=4, occ=2, size=112), wrapper)
    assert {'loss', 'loss_adaface', 'loss_qaconv_pair', 'loss_qaconv_triplet', 'loss_occlusion',
            'qaconv_acc', 'feat_norm', 'occ_mse'} <= set(log_vars)
    assert all(torch.isfinite(v).all() for k, v in log_vars.items() if 'loss' in k)
    assert wrapper.skipped_updates == 0
    assert any(not torch.equal(b, a)
               for b, a in zip(occ_head_before, model.occlusion_head.parameters()))
    model.eval()
    with torch.no_grad():
        out = model.test_step(_batch(batch=2, size=112))
    assert tuple(out[0].embedding.shape) == (512, )
    assert tuple(out[0].feature_map.shape) == (512, 7, 7)
    assert tuple(out[0].visibility.shape) == (1, 7, 7)


@pytest.mark.parametrize('name, heads', [('oaml_ir50_14x14', (256, 14, 14)),
                                         ('adaface_ir50', None)])
def test_other_model_configs_build_consistently(name, heads):
    cfg = Config.fromfile(f'configs/_base_/models/{name}.py')
    cfg.model['_scope_'] = SCOPE
    model = MODELS.build(cfg.model)
    if heads is None:
        assert model.qaconv_head is None and model.occlusion_head is None
        assert not model.visibility_weighting and model.loss_weights == dict(loss_adaface=1.0)
    else:
        qaconv = model.qaconv_head
        assert (qaconv.num_features, qaconv.height, qaconv.width) == heads
        assert model.occlusion_head.in_channels == heads[0]
        assert model.backbone.out_channels[model.feature_level] == heads[0]
        model.eval()
        with torch.no_grad():  # the configured level really is 14x14 at 112x112
            feats = model(torch.zeros(1, 3, 112, 112), mode='tensor')
        assert tuple(feats['feature_map'].shape[1:]) == heads


# --------------------------------------------------------------------------- Runner


class _FaceData(Dataset):
    """Six 32x32 BGR faces of three identities, packed by the real PackFaceInputs."""

    def __init__(self):
        self.pack = PackFaceInputs()
        self.images = _images(6, seed=5).permute(0, 2, 3, 1).numpy()

    def __len__(self):
        return 6

    def __getitem__(self, i):
        mask = np.ones((SIZE, SIZE), np.float32)
        mask[SIZE // 2:] = i % 2
        return self.pack(dict(img=self.images[i], gt_label=i // 2, visibility_mask=mask,
                              sample_idx=i))


class _RecordLosses(Hook):

    def __init__(self):
        self.logs = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.logs.append(outputs)


def test_runner_trains_with_the_occlusion_stream(tmp_path):
    recorder = _RecordLosses()
    runner = Runner(
        model=_tiny_cfg(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_FaceData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            drop_last=True,
            num_workers=0),
        optim_wrapper=dict(type='FiniteLossOptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[
            OcclusionBatchHook(
                occluded_loader=dict(dataset=_FaceData(), batch_size=4, num_workers=0),
                clean_loader=dict(dataset=_FaceData(), batch_size=1, num_workers=0),
                clean_ratio=0.2), recorder
        ],
        randomness=dict(seed=0),
        experiment_name=f'oaml_{next(_run_ids)}',
        default_scope=SCOPE)
    backbone = _Capture(runner.model.backbone)
    runner.train()
    assert runner.iter == 2 and len(recorder.logs) == 2
    # Each iteration: the main batch (4) with gradient, then the occlusion batch (4 + 1).
    assert [args[0].shape[0] for args, _ in backbone.calls] == [4, 5, 4, 5]
    for log in recorder.logs:  # the occlusion stream (4 + 1 faces) supervised the head
        assert {'loss_adaface', 'loss_qaconv_pair', 'loss_occlusion', 'occ_mse'} <= set(log)
        assert torch.isfinite(log['loss'])
    assert runner.optim_wrapper.skipped_updates == 0


def _ddp_worker(rank, port, queue):
    """One rank of a 2-process gloo run of MMDistributedDataParallel.train_step (which never
    calls OAML.train_step); rank 0 has an occlusion batch, rank 1 none (main supervision).
    Results go back as numpy arrays: tensors would be shared through file descriptors that
    vanish when the process exits."""
    # A forked child must not enter OpenMP regions the parent used (libgomp is not
    # fork-safe and hangs); one thread keeps every op sequential.
    torch.set_num_threads(1)
    import os

    import torch.distributed as dist

    from mmoaml.engine import CPUDistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    with DefaultScope.overwrite_default_scope(SCOPE):
        model = _tiny(seed=0)
        ddp = CPUDistributedDataParallel(module=model, broadcast_buffers=False)
        wrapper = _wrapper(model, lr=0.1)
        start = [p.detach().clone() for p in model.occlusion_head.parameters()]
        log_vars = ddp.train_step(_batch(occ=2 if rank == 0 else 0, seed=rank), wrapper)
    changed = any(not torch.equal(s, p) for s, p in zip(start, model.occlusion_head.parameters()))
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    queue.put((rank, sorted(log_vars), changed, params))
    dist.destroy_process_group()


@pytest.mark.forks_training
def test_ddp_train_step_carries_the_occlusion_stream_and_syncs_gradients():
    import multiprocessing
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_ddp_worker, args=(r, port, queue), daemon=True) for r in range(2)
    ]
    for w in workers:
        w.start()
    results = {r: rest for r, *rest in (queue.get(timeout=120) for _ in workers)}
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert 'loss_occlusion' in results[0][0] and 'loss_occlusion' in results[1][0]
    assert results[0][1] and results[1][1]  # the occlusion head trained on both ranks
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-6)  # averaged gradients
