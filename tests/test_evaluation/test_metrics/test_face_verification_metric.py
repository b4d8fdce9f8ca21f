"""FaceVerificationMetric: pairing, score routing, storage, errors, and DDP gathering."""
import json
import socket

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.dataset import DefaultSampler

from mmoaml.evaluation import (FaceVerificationMetric, equal_error_rate, roc_auc, tar_at_far,
                               verification_accuracy, verification_accuracy_l2)
from mmoaml.models import QAConvHead

C, H, W = 8, 2, 2  # feature maps [C, H, W]
PIXELS = 8  # ground-truth masks are 8x8, i.e. 4x4 pixels per map cell
ALL_TYPES = ('adaface', 'qaconv', 'qaconv_gt', 'qaconv_none', 'combined')


def _samples(num_pairs, seed=0):
    """Data samples as the Evaluator hands them over (dicts), pair k = images 2k, 2k+1."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for k in range(num_pairs):
        issame = bool(torch.rand(1, generator=g) < 0.5)
        emb = F.normalize(torch.randn(2, 16, generator=g), dim=1)
        maps = torch.randn(2, C, H, W, generator=g)
        if issame:
            emb[1] = F.normalize(emb[0] + 0.8 * emb[1], dim=0)
            maps[1] = maps[0] + 0.8 * maps[1]
        vis = torch.rand(2, 1, H, W, generator=g)
        vis[vis < 0.2] = 0  # some hidden cells
        gt = (torch.rand(2, 1, PIXELS, PIXELS, generator=g) < 0.7).float()
        for j in range(2):
            samples.append(
                dict(sample_idx=2 * k + j, pair_idx=k, issame=issame, embedding=emb[j],
                     feature_map=F.normalize(maps[j], dim=0), visibility=vis[j],
                     gt_visibility=gt[j], img_path=f'img{2 * k + j}.jpg'))
    return samples


def _head():
    """A QAConv head with non-trivial eval statistics, left in train mode."""
    head = QAConvHead(num_features=C, height=H, width=W)
    with torch.no_grad():
        head.bn.running_mean.fill_(0.3)
        head.bn.running_var.fill_(0.5)
        head.logit_bn.running_mean.fill_(-0.2)
        head.logit_bn.running_var.fill_(2.0)
        head.fc.weight.copy_(torch.linspace(0.1, 0.4, H * W).view(1, -1))
        head.fc.bias.fill_(0.05)
    return head.train()


def _metric(score_types=ALL_TYPES, name='toy', head=None, **kwargs):
    metric = FaceVerificationMetric(score_types=score_types, **kwargs)
    metric.dataset_meta = dict(name=name)
    if head is not None:
        metric.bind_matcher(head)
    return metric


def _run(metric, samples, order=None, batch=3):
    order = range(len(samples)) if order is None else order
    order = list(order)
    for start in range(0, len(order), batch):
        metric.process(None, [samples[i] for i in order[start:start + batch]])
    return metric.evaluate(len(samples))


def _expected(samples, head, nfolds, fars, weights=(0.5, 0.5)):
    """Expected results from independently computed per-pair scores."""
    first, second = samples[0::2], samples[1::2]
    issame = np.array([s['issame'] for s in first])
    e1 = torch.stack([s['embedding'] for s in first]).numpy()
    e2 = torch.stack([s['embedding'] for s in second]).numpy()
    head = head.eval()

    @torch.no_grad()
    def qaconv(vis_key):
        out = []
        for a, b in zip(first, second):
            # The metric stores maps in float16.
            pa, pb = a['feature_map'].half().float()[None], b['feature_map'].half().float()[None]
            va = vb = None
            if vis_key == 'visibility':
                va, vb = a['visibility'][None], b['visibility'][None]
            elif vis_key == 'gt':  # 4x4-pixel cell means
                va, vb = (s['gt_visibility'].view(1, H, 4, W, 4).mean((2, 4))[None]
                          for s in (a, b))
            out.append(float(head.match(pa, pb, va, vb)[0, 0]))
        return np.array(out)

    scores = dict(
        adaface=np.array([float(np.dot(a.astype(np.float64), b)) for a, b in zip(e1, e2)]),
        qaconv=qaconv('visibility'), qaconv_gt=qaconv('gt'), qaconv_none=qaconv(None))
    z = {k: (v - v.mean()) / v.std() for k, v in scores.items()}
    scores['combined'] = weights[0] * z['adaface'] + weights[1] * z['qaconv']
    expected = {'toy/num_pairs': len(first), 'toy/num_impostors': int((~issame).sum())}
    for name, s in scores.items():
        if name == 'adaface':
            acc, std, l2 = verification_accuracy_l2(e1, e2, issame, nfolds)
            thr = 1 - l2 / 2
            expected['toy/adaface/l2_threshold'] = l2
        else:
            acc, std, thr = verification_accuracy(s, issame, nfolds)
        expected.update({
            f'toy/{name}/accuracy': acc, f'toy/{name}/accuracy_std': std,
            f'toy/{name}/threshold': thr, f'toy/{name}/auc': roc_auc(s, issame),
            f'toy/{name}/eer': equal_error_rate(s, issame)})
        for p in tar_at_far(s, issame, fars):
            expected[f'toy/{name}/tar@far={p.far_target:g}'] = p.tar
    return expected, scores


def test_every_score_type_is_computed_from_its_own_inputs():
    samples = _samples(12)
    head = _head()
    metric = _metric(head=head, nfolds=3, far=(0.25, 0.5), combine_weights=(0.3, 0.7),
                     qaconv_chunk=5)
    # Shuffled arrival and a repeated image (sampler padding) must not matter.
    order = list(np.random.default_rng(0).permutation(24)) + [0, 5]
    results = _run(metric, samples, order)
    assert head.training  # the metric scored in eval mode and restored the mode
    expected, scores = _expected(samples, head, 3, (0.25, 0.5), (0.3, 0.7))
    assert results.keys() == expected.keys()
    for key, value in expected.items():
        # float32 QAConv scores of a block and of a single pair differ in the last bits.
        assert results[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        assert type(results[key]) in (float, int), key  # no numpy scalars in checkpoints
    # The routing matters: the three visibilities give three different QAConv scores.
    assert not np.allclose(scores['qaconv'], scores['qaconv_none'])
    assert not np.allclose(scores['qaconv_gt'], scores['qaconv'])
    assert metric.results == []


def test_entries_are_one_per_image_on_cpu_in_reduced_precision():
    samples = _samples(2)
    metric = _metric(head=_head())
    metric.process(None, samples)
    assert len(metric.results) == 4
    entry = metric.results[1]
    assert entry['feature_map'].untyped_storage().nbytes() == C * H * W * 2
    assert entry['sample_idx'] == 1 and entry['pair_idx'] == 0
    assert entry['feature_map'].dtype == torch.float16
    assert tuple(entry['feature_map'].shape) == (C, H, W)
    assert entry['embedding'].dtype == torch.float32
    # Per-image views of batch tensors are copied: gathering pickles a tensor's whole storage.
    batch = torch.zeros(4, 16)
    metric.process(None, [dict(samples[0], embedding=batch[0])])
    assert metric.results[-1]['embedding'].untyped_storage().nbytes() == 16 * 4
    # Ground truth is kept at the map grid only: 4x4-pixel cell means.
    assert tuple(entry['gt_visibility'].shape) == (1, H, W)
    torch.testing.assert_close(entry['gt_visibility'],
                               samples[1]['gt_visibility'].view(1, H, 4, W, 4).mean((2, 4)))
    # Nothing that the requested score types do not need is stored.
    light = _metric(score_types=('adaface', ))
    light.process(None, samples)
    assert set(light.results[0]) == {'sample_idx', 'pair_idx', 'issame', 'embedding'}


def test_separable_embeddings_give_perfect_known_results():
    samples = []
    basis = torch.eye(8)
    for k in range(10):
        issame = k % 2 == 0
        a, b = basis[k % 4], basis[k % 4] if issame else basis[4 + k % 4]
        samples += [dict(sample_idx=2 * k + j, issame=issame, embedding=e)
                    for j, e in enumerate((a, b))]
    results = _run(_metric(score_types=('adaface', ), nfolds=5, far=(0.2, )), samples)
    assert results['toy/adaface/accuracy'] == 1.0
    assert results['toy/adaface/accuracy_std'] == 0.0
    assert results['toy/adaface/auc'] == 1.0 and results['toy/adaface/eer'] == 0.0
    assert results['toy/adaface/tar@far=0.2'] == 1.0
    # Distances are 0 (same) and 2 (different): the lowest separating grid value is 0.01.
    assert results['toy/adaface/l2_threshold'] == pytest.approx(0.01)
    assert results['toy/adaface/threshold'] == pytest.approx(1 - 0.01 / 2)
    assert results['toy/num_pairs'] == 10 and results['toy/num_impostors'] == 5


def test_set_name_from_prefix_or_dataset_meta():
    samples = _samples(3)
    named = FaceVerificationMetric(score_types=('adaface', ), nfolds=3, far=(0.5, ),
                                   prefix='masked')
    named.dataset_meta = dict(name='lfw')
    assert 'masked/adaface/accuracy' in _run(named, samples)
    anonymous = FaceVerificationMetric(score_types=('adaface', ), nfolds=3, far=(0.5, ))
    assert 'adaface/accuracy' in _run(anonymous, samples)


def test_missing_inputs_and_broken_layouts_are_reported():
    samples = _samples(3)
    with pytest.raises(RuntimeError, match='bind_matcher'):
        _run(_metric(nfolds=3), samples)
    with pytest.raises(KeyError, match='sample_idx'):
        _metric().process(None, [{k: v for k, v in samples[0].items() if k != 'sample_idx'}])
    with pytest.raises(KeyError, match="'feature_map'"):
        _metric().process(None, [{k: v for k, v in samples[0].items() if k != 'feature_map'}])
    with pytest.raises(ValueError, match='map grid'):
        _metric().process(None, [dict(samples[0], visibility=torch.ones(1, 3, 3))])
    with pytest.raises(ValueError, match='collected 5 distinct images, the data set has 6'):
        metric = _metric(head=_head(), nfolds=2)
        metric.process(None, samples[:5])
        metric.evaluate(6)
    with pytest.raises(ValueError, match='5 images cannot form pairs'):
        _run(_metric(head=_head(), nfolds=2), samples[:5])
    with pytest.raises(ValueError, match=r'missing: \[2\]'):
        metric = _metric(score_types=('adaface', ), nfolds=2)
        metric.process(None, samples[:2] + samples[3:])
        metric.compute_metrics(metric.results)
    swapped = [dict(s) for s in samples]
    swapped[3]['pair_idx'] = 0
    with pytest.raises(ValueError, match='should form pair 1'):
        _run(_metric(score_types=('adaface', ), nfolds=2), swapped)
    partial = [dict(s) for s in samples]
    partial[2]['visibility'] = None
    with pytest.raises(ValueError, match="'visibility' is given for 5 of 6"):
        _run(_metric(head=_head(), nfolds=2), partial)
    with pytest.raises(ValueError, match='score_types'):
        FaceVerificationMetric(score_types=('adaface', 'arcface'))
    with pytest.raises(ValueError, match='combine_weights'):
        FaceVerificationMetric(combine_weights=(0, 0))
    with pytest.raises(TypeError, match='match_pairs'):
        FaceVerificationMetric().bind_matcher(torch.nn.Linear(2, 2))


def test_model_without_visibility_scores_qaconv_unweighted():
    samples = [{k: v for k, v in s.items() if k != 'visibility'} for s in _samples(6)]
    head = _head()
    results = _run(
        _metric(score_types=('qaconv', 'qaconv_none'), head=head, nfolds=2, far=(0.5, )), samples)
    assert results['toy/qaconv/auc'] == results['toy/qaconv_none/auc']
    assert results['toy/qaconv/accuracy'] == results['toy/qaconv_none/accuracy']


# ----------------------------------------------------------------- distributed (gloo, CPU) ----
NUM_PAIRS = 7  # 14 images over 3 ranks: DefaultSampler pads to 15
WORLD_SIZE = 3


def _dist_worker(rank, port, out_dir):
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD_SIZE)
    try:
        samples = _samples(NUM_PAIRS)
        outcome = {}
        for scenario, round_up, device in (('padded', True, 'cpu'), ('uneven', False, 'gpu')):
            sampler = DefaultSampler(list(range(len(samples))), shuffle=True, seed=1,
                                     round_up=round_up)
            metric = _metric(head=_head(), nfolds=3, far=(0.25, ), gather_chunk=2,
                             collect_device=device)
            outcome[scenario] = dict(
                results=_run(metric, samples, list(sampler), batch=2),
                local=len(list(sampler)))
        failing = _metric(head=_head(), nfolds=3, gather_chunk=2)
        try:
            _run(failing, samples, list(DefaultSampler(list(range(10)), shuffle=False)))
        except Exception as error:  # noqa: BLE001  (the test inspects the type)
            outcome['error'] = f'{type(error).__name__}: {error}'
        with open(f'{out_dir}/rank{rank}.json', 'w') as f:
            json.dump(outcome, f)
    finally:
        torch_dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_distributed_gathering_matches_single_process(tmp_path):
    samples = _samples(NUM_PAIRS)
    single = _run(_metric(head=_head(), nfolds=3, far=(0.25, )), samples)
    mp.spawn(_dist_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE)
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f'rank{rank}.json') as f:
            outcome = json.load(f)
        # Every rank receives rank 0's result: identical to the single-process run.
        assert outcome['padded']['results'] == single
        assert outcome['uneven']['results'] == single
        assert outcome['padded']['local'] == 5  # 15 indices: one padded image
        assert outcome['uneven']['local'] == (5 if rank < 2 else 4)
        # An error on rank 0 (10 of 14 images) reaches every rank instead of hanging them.
        expected = 'ValueError' if rank == 0 else 'RuntimeError'
        assert outcome['error'].startswith(expected) and 'collected 10' in outcome['error']
