"""FaceIdentificationMetric: expected ranks/TPIR from brute force, shortlist re-ranking against
full QAConv scoring, recall, roles, binding and errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmoaml.evaluation import FaceIdentificationMetric
from mmoaml.models import QAConvHead
from mmoaml.registry import METRICS

C, H, W, D = 8, 2, 2, 16
GALLERY_LABELS = [0, 0, 1, 2, 3, 3, 4]
PROBE_LABELS = [0, 1, 1, 2, 3, 4, 4, 7, 8, 9]  # 7, 8, 9 are not in the gallery


def _samples(seed=0, with_vis=True):
    """Gallery images first, then probes; mated probes are noisy copies of a gallery image."""
    g = torch.Generator().manual_seed(seed)
    ident_emb = F.normalize(torch.randn(10, D, generator=g), dim=1)
    ident_map = torch.randn(10, C, H, W, generator=g)
    samples = []
    labels = [('gallery', lab) for lab in GALLERY_LABELS] + [('probe', lab) for lab in PROBE_LABELS]
    for i, (role, lab) in enumerate(labels):
        emb = F.normalize(ident_emb[lab] + 0.9 * torch.randn(D, generator=g), dim=0)
        fmap = F.normalize(ident_map[lab] + 0.9 * torch.randn(C, H, W, generator=g), dim=0)
        sample = dict(sample_idx=i, role=role, gt_label=torch.tensor([lab]), embedding=emb,
                      feature_map=fmap.half())
        if with_vis:
            vis = torch.rand(1, H, W, generator=g)
            vis[vis < 0.2] = 0
            sample['visibility'] = vis
        samples.append(sample)
    return samples


def _head():
    head = QAConvHead(num_features=C, height=H, width=W)
    with torch.no_grad():
        head.bn.running_mean.fill_(0.3)
        head.bn.running_var.fill_(0.5)
        head.logit_bn.running_var.fill_(2.0)
        head.fc.weight.copy_(torch.linspace(0.1, 0.4, H * W).view(1, -1))
    return head.train()


def _split(samples):
    gal = [s for s in samples if s['role'] == 'gallery']
    pro = [s for s in samples if s['role'] == 'probe']
    return gal, pro


def _brute_force(scores, cand, gallery_labels, probe_labels):
    """Per probe: (rank or 0 if non-mated, own score, best score) by the protocol's definition."""
    out = []
    for p, lab in enumerate(probe_labels):
        ids = {}
        for j in cand[p]:
            ids[gallery_labels[j]] = max(ids.get(gallery_labels[j], -np.inf), scores[p, j])
        if lab not in gallery_labels:
            out.append((0, -np.inf, max(ids.values())))
            continue
        if lab not in ids:
            out.append((len(set(gallery_labels)) + 1, -np.inf, max(ids.values())))
            continue
        rank = 1 + sum(1 for g, v in ids.items() if g != lab and v >= ids[lab])
        out.append((rank, ids[lab], max(ids.values())))
    return out


def _expected_rates(per_probe, topk, fpirs):
    mated = [r for r in per_probe if r[0] > 0]
    nonmated = sorted((r[2] for r in per_probe if r[0] == 0), reverse=True)
    rates = {f'rank-{k}': sum(r[0] <= k for r in mated) / len(mated) for k in topk}
    for f in fpirs:
        allowed = int(np.floor(f * len(nonmated) + 1e-9))
        t = nonmated[allowed] if allowed < len(nonmated) else -np.inf
        rates[f'tpir@fpir={f:g}'] = sum(r[0] == 1 and r[1] > t for r in mated) / len(mated)
    return rates


def _run(metric, samples, order=None):
    order = list(range(len(samples))) if order is None else list(order)
    for start in range(0, len(order), 4):
        metric.process(None, [dict(samples[i]) for i in order[start:start + 4]])
    return metric.evaluate(len(samples))


@pytest.mark.parametrize('with_vis', [True, False])
def test_matches_brute_force_on_every_score_type(with_vis):
    samples = _samples(with_vis=with_vis)
    head = _head()
    k, topk, fpirs = 3, (1, 2), (0.34, 1.0)
    metric = FaceIdentificationMetric(topk=topk, fpir=fpirs, shortlist_k=k, qaconv_chunk=5)
    metric.dataset_meta = dict(name='toy')
    metric.bind_matcher(head)
    rng = np.random.default_rng(0)
    results = _run(metric, samples, order=rng.permutation(len(samples)))
    assert head.training  # restored after eval-mode scoring

    gal, pro = _split(samples)
    gl = [int(s['gt_label']) for s in gal]
    pl = [int(s['gt_label']) for s in pro]
    cos = (torch.stack([s['embedding'] for s in pro]) @ torch.stack(
        [s['embedding'] for s in gal]).t()).double().numpy()
    cand = np.argsort(-cos, axis=1, kind='stable')[:, :k]
    vis = (lambda side: torch.stack([s['visibility'] for s in side])) if with_vis else (
        lambda side: None)
    with torch.no_grad():
        full_qa = head.eval().match(
            torch.stack([s['feature_map'] for s in pro]).float(),
            torch.stack([s['feature_map'] for s in gal]).float(), vis(pro),
            vis(gal)).double().numpy()
    sl_cos = np.take_along_axis(cos, cand, 1)
    sl_qa = np.take_along_axis(full_qa, cand, 1)
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    fused = np.zeros_like(cos)
    np.put_along_axis(fused, cand, 0.5 * z(sl_cos) + 0.5 * z(sl_qa), 1)
    expected = {
        'adaface': _brute_force(cos, [range(len(gal))] * len(pro), gl, pl),
        'qaconv': _brute_force(full_qa, cand, gl, pl),
        'combined': _brute_force(fused, cand, gl, pl),
    }
    for score_type, per_probe in expected.items():
        for key, value in _expected_rates(per_probe, topk, fpirs).items():
            assert results[f'toy/{score_type}/{key}'] == pytest.approx(value, abs=1e-6), key
    assert results['toy/num_gallery'] == 7 and results['toy/num_identities'] == 5
    assert results['toy/num_probes'] == 10 and results['toy/num_mated'] == 7
    assert results['toy/num_non_mated'] == 3 and results['toy/shortlist_k'] == 3
    recall = np.mean([full_qa[p].argmax() in cand[p] for p in range(len(pro))])
    assert results['toy/qaconv/shortlist_recall'] == pytest.approx(recall)
    assert results['toy/qaconv/recall_probes'] == 10


def test_whole_gallery_shortlist_equals_full_qaconv_and_recall_is_one():
    samples = _samples(seed=3)
    head = _head()
    metric = FaceIdentificationMetric(topk=(1, ), fpir=(), shortlist_k=50, prefix='s')
    metric.bind_matcher(head)
    results = _run(metric, samples)
    gal, pro = _split(samples)
    with torch.no_grad():
        full_qa = head.eval().match(
            torch.stack([s['feature_map'] for s in pro]).float(),
            torch.stack([s['feature_map'] for s in gal]).float(),
            torch.stack([s['visibility'] for s in pro]),
            torch.stack([s['visibility'] for s in gal])).double().numpy()
    gl = [int(s['gt_label']) for s in gal]
    per_probe = _brute_force(full_qa, [range(7)] * 10, gl, [int(s['gt_label']) for s in pro])
    assert results['s/qaconv/rank-1'] == pytest.approx(
        _expected_rates(per_probe, (1, ), ())['rank-1'])
    assert results['s/shortlist_k'] == 7
    assert results['s/qaconv/shortlist_recall'] == 1.0
    assert not any('tpir' in key for key in results)


def test_recall_subset_is_evenly_spaced_and_can_be_skipped():
    samples = _samples()
    metric = FaceIdentificationMetric(
        shortlist_k=5, recall_probes=4, fpir=(), score_types=('qaconv', ))
    metric.bind_matcher(_head())
    results = _run(metric, samples)
    assert results['qaconv/recall_probes'] == 4
    metric = FaceIdentificationMetric(
        shortlist_k=5, recall_probes=0, fpir=(), score_types=('qaconv', ))
    metric.bind_matcher(_head())
    assert 'qaconv/shortlist_recall' not in _run(metric, samples)


def test_adaface_only_needs_no_maps_or_matcher():
    samples = [{k: v for k, v in s.items() if k not in ('feature_map', 'visibility')}
               for s in _samples()]
    metric = FaceIdentificationMetric(score_types=('adaface', ), topk=(1, ), fpir=(0.34, ))
    results = _run(metric, samples)
    assert set(results) == {
        'num_gallery', 'num_identities', 'num_probes', 'num_mated', 'num_non_mated',
        'shortlist_k', 'adaface/rank-1', 'adaface/tpir@fpir=0.34'
    }


def test_registered_and_errors_are_clear():
    metric = METRICS.build(dict(type='FaceIdentificationMetric', shortlist_k=5, _scope_='mmoaml'))
    assert isinstance(metric, FaceIdentificationMetric)
    samples = _samples()
    with pytest.raises(RuntimeError, match='bind_matcher'):
        _run(FaceIdentificationMetric(shortlist_k=5), samples)
    with pytest.raises(KeyError, match="'role'"):
        FaceIdentificationMetric().process(None, [dict(samples[0], role=None)])
    with pytest.raises(KeyError, match='gt_label'):
        FaceIdentificationMetric().process(None, [dict(samples[0], gt_label=None)])
    with pytest.raises(KeyError, match='feature_map'):
        FaceIdentificationMetric().process(None, [dict(samples[0], feature_map=None)])
    metric = FaceIdentificationMetric(score_types=('adaface', ))
    with pytest.raises(ValueError, match='gallery and probe images'):
        _run(metric, [s for s in samples if s['role'] == 'gallery'])
    mixed = [dict(s) for s in samples]
    del mixed[-1]['visibility']
    metric = FaceIdentificationMetric(shortlist_k=5)
    metric.bind_matcher(_head())
    with pytest.raises(ValueError, match='visibility'):
        _run(metric, mixed)
    with pytest.raises(ValueError, match='topk'):
        FaceIdentificationMetric(topk=(1, 30), shortlist_k=20)
    with pytest.raises(TypeError, match='match'):
        FaceIdentificationMetric().bind_matcher(torch.nn.Linear(2, 2))


def test_through_evaluator_with_data_samples():
    """Role and label arrive as DataSample metainfo / gt_label, flattened by the Evaluator."""
    from mmengine.evaluator import Evaluator
    from mmpretrain.structures import DataSample
    embeddings = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]]), dim=1)
    data_samples = []
    for i, (role, label) in enumerate([('gallery', 0), ('gallery', 1), ('probe', 0),
                                       ('probe', 5)]):
        sample = DataSample().set_gt_label(label)
        sample.set_metainfo(dict(sample_idx=i, role=role))
        sample.set_field(embeddings[i], 'embedding')
        data_samples.append(sample)
    evaluator = Evaluator(
        FaceIdentificationMetric(score_types=('adaface', ), topk=(1, ), fpir=(1.0, )))
    evaluator.dataset_meta = dict(name='tiny')
    evaluator.process(data_samples)
    results = evaluator.evaluate(4)
    assert results['tiny/adaface/rank-1'] == 1.0
    assert results['tiny/num_mated'] == 1 and results['tiny/num_non_mated'] == 1
