"""DumpFaceFeatures: what the .npz holds (no pickle), read-back, offline scores equal to the
online FaceVerificationMetric, partial dumps and errors."""
import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmoaml.evaluation import (DumpFaceFeatures, FaceVerificationMetric, load_face_features,
                               score_face_features)
from mmoaml.models import QAConvHead
from mmoaml.registry import METRICS

C, H, W, PIXELS = 8, 2, 2, 8  # maps [C, H, W]; ground-truth masks 8x8 = 4x4 pixels per cell
ALL_TYPES = ('adaface', 'qaconv', 'qaconv_gt', 'qaconv_none', 'combined')
METRIC_CFG = dict(nfolds=3, far=[0.5], score_types=list(ALL_TYPES), combine_weights=[0.3, 0.7])


def _samples(num_pairs=9, seed=0, visibility=True):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for k in range(num_pairs):
        issame = k % 3 != 0
        emb = F.normalize(torch.randn(2, 16, generator=g), dim=1)
        maps = torch.randn(2, C, H, W, generator=g)
        if issame:
            emb[1] = F.normalize(emb[0] + 0.9 * emb[1], dim=0)
            maps[1] = maps[0] + 0.9 * maps[1]
        vis = torch.rand(2, 1, H, W, generator=g)
        gt = (torch.rand(2, 1, PIXELS, PIXELS, generator=g) < 0.6).float()
        for j in range(2):
            sample = dict(sample_idx=2 * k + j, pair_idx=k, issame=issame, embedding=emb[j],
                          feature_map=F.normalize(maps[j], dim=0), gt_visibility=gt[j])
            if visibility:
                sample['visibility'] = vis[j]
            samples.append(sample)
    return samples


def _head():
    head = QAConvHead(num_features=C, height=H, width=W)
    with torch.no_grad():
        head.bn.running_mean.fill_(0.3)
        head.logit_bn.running_var.fill_(2.0)
        head.fc.weight.copy_(torch.linspace(0.1, 0.4, H * W).view(1, -1))
    return head


def _feed(metric, samples, name='toy', head=None, padding=2):
    """Process in a shuffled order with a few repeated samples (the sampler's padding)."""
    metric.dataset_meta = dict(name=name)
    if head is not None:
        metric.bind_matcher(head)
    order = list(range(len(samples))) + list(range(padding))
    random.Random(0).shuffle(order)
    for start in range(0, len(order), 4):
        metric.process(None, [samples[i] for i in order[start:start + 4]])
    return metric.evaluate(len(samples))


def test_file_holds_every_field_in_sample_order_without_pickle(tmp_path):
    samples, head = _samples(), _head()
    metric = DumpFaceFeatures(str(tmp_path / 'dump'), metric_cfg=dict(METRIC_CFG, type='x'))
    assert _feed(metric, samples, head=head) == {}
    path = tmp_path / 'dump' / 'toy.npz'
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    assert all(a.dtype != object for a in arrays.values())
    n = len(samples)
    assert arrays['sample_idx'].tolist() == list(range(n))
    assert arrays['pair_idx'].tolist() == [i // 2 for i in range(n)]
    assert arrays['issame'].tolist() == [k % 3 != 0 for k in range(n // 2)]
    np.testing.assert_array_equal(arrays['embedding'],
                                  torch.stack([s['embedding'] for s in samples]).numpy())
    assert arrays['feature_map'].dtype == np.float16
    np.testing.assert_array_equal(
        arrays['feature_map'], torch.stack([s['feature_map'] for s in samples]).half().numpy())
    np.testing.assert_array_equal(arrays['visibility'],
                                  torch.stack([s['visibility'] for s in samples]).numpy())
    # Ground truth on the map grid: the mean of each cell's 4x4 pixel block, by hand.
    gt = torch.stack([s['gt_visibility'] for s in samples]).numpy()
    cells = gt.reshape(n, 1, H, PIXELS // H, W, PIXELS // W).mean(axis=(3, 5))
    np.testing.assert_allclose(arrays['gt_visibility'], cells, atol=1e-7)
    for key, value in head.state_dict().items():
        np.testing.assert_array_equal(arrays[f'qaconv_head.{key}'], value.numpy())
    meta = json.loads(str(arrays['meta']))
    assert meta == dict(format=1, set_name='toy', metric_cfg=METRIC_CFG,
                        matcher_cfg=dict(type='QAConvHead', num_features=C, height=H, width=W,
                                         weighting='mask'))


def test_read_back_entries_and_matcher(tmp_path):
    samples, head = _samples(), _head()
    _feed(DumpFaceFeatures(str(tmp_path)), samples, name='lfw', head=head)
    dump = load_face_features(tmp_path / 'lfw.npz')
    assert dump.set_name == 'lfw' and dump.metric_cfg == {}
    assert dump.servable_score_types() == set(ALL_TYPES)
    for entry, sample in zip(dump.entries, samples):
        assert (entry['sample_idx'], entry['pair_idx'], entry['issame']) == (
            sample['sample_idx'], sample['pair_idx'], sample['issame'])
        assert torch.equal(entry['embedding'], sample['embedding'])
        assert torch.equal(entry['feature_map'], sample['feature_map'].half())
    matcher = dump.build_matcher()
    assert not matcher.training
    for key, value in head.state_dict().items():
        assert torch.equal(matcher.state_dict()[key], value)


@pytest.mark.parametrize('visibility', [True, False])
def test_offline_scores_equal_the_online_metric_exactly(tmp_path, visibility):
    samples, head = _samples(visibility=visibility), _head()
    online = _feed(FaceVerificationMetric(**METRIC_CFG), samples, head=head)
    _feed(DumpFaceFeatures(str(tmp_path), metric_cfg=METRIC_CFG), samples, head=head)
    dump = load_face_features(tmp_path / 'toy.npz')
    assert ('visibility' in dump.entries[0]) == visibility
    assert score_face_features(dump) == online
    # Overrides replace the dumped arguments.
    online_ada = _feed(FaceVerificationMetric(nfolds=3, far=[0.5], score_types=['adaface']),
                       samples)
    assert score_face_features(dump, score_types=['adaface']) == online_ada


def test_partial_dumps_serve_only_what_they_hold(tmp_path):
    samples = _samples()
    _feed(DumpFaceFeatures(str(tmp_path), score_types=['adaface']), samples, name='ada')
    dump = load_face_features(tmp_path / 'ada.npz')
    assert set(dump.entries[0]) == {'sample_idx', 'pair_idx', 'issame', 'embedding'}
    assert dump.servable_score_types() == {'adaface'}
    assert dump.build_matcher() is None
    with pytest.raises(ValueError, match=r"no fields for the score types \['combined', 'qaconv'\]"):
        score_face_features(dump)
    # Maps but no matcher bound: written with a warning, QAConv cannot be served.
    _feed(DumpFaceFeatures(str(tmp_path)), samples, name='nohead')
    assert load_face_features(tmp_path / 'nohead.npz').servable_score_types() == {'adaface'}


def test_built_from_the_registry(tmp_path):
    metric = METRICS.build(dict(type='DumpFaceFeatures', out_dir=str(tmp_path), _scope_='mmoaml'))
    assert isinstance(metric, DumpFaceFeatures)


def test_errors_name_the_cause(tmp_path):
    with pytest.raises(ValueError, match='metric_cfg'):
        DumpFaceFeatures(str(tmp_path), metric_cfg=dict(nfolds=1))
    with pytest.raises(ValueError, match='metric_cfg'):
        DumpFaceFeatures(str(tmp_path), metric_cfg=dict(colour='red'))
    unnamed = DumpFaceFeatures(str(tmp_path))
    unnamed.process(None, _samples(num_pairs=2))
    with pytest.raises(ValueError, match='no name'):
        unnamed.evaluate(4)
    with pytest.raises(FileNotFoundError, match='missing.npz'):
        load_face_features(tmp_path / 'missing.npz')
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='junk.npz'):
        load_face_features(tmp_path / 'junk.npz')
    np.savez(tmp_path / 'other.npz', masks=np.zeros(3))
    with pytest.raises(ValueError, match='other.npz: not a feature dump'):
        load_face_features(tmp_path / 'other.npz')
    _feed(DumpFaceFeatures(str(tmp_path)), _samples(num_pairs=3), head=_head())
    with np.load(tmp_path / 'toy.npz') as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays['meta']))
    np.savez(tmp_path / 'v2.npz', **dict(arrays, meta=np.array(json.dumps(dict(meta, format=2)))))
    with pytest.raises(ValueError, match='v2.npz: dump format 2'):
        load_face_features(tmp_path / 'v2.npz')
    np.savez(tmp_path / 'short.npz', **dict(arrays, embedding=arrays['embedding'][:-1]))
    with pytest.raises(ValueError, match='short.npz: "embedding" must be float32 with 6 rows'):
        load_face_features(tmp_path / 'short.npz')
