"""BaseFaceMetric and the shared helpers: entry reading, de-duplicated (chunked, DDP) gathering,
rank-0 errors reaching every rank, label-free standardisation, and the identification metric on
the shared gathering."""
import json
import socket

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.dataset import DefaultSampler

from mmoaml.evaluation import BaseFaceMetric, FaceIdentificationMetric, standardise
from mmoaml.evaluation.metrics.base_face_metric import (all_or_none, eval_mode, stack_field,
                                                        unique_by_index)
from mmoaml.models import QAConvHead

C, H, W, D = 8, 2, 2, 16


class ToyMetric(BaseFaceMetric):
    """Stores the embedding's first value; reports which images reached compute_metrics."""

    matcher_methods = ('match', 'match_pairs')

    def __init__(self, fail=False, **kwargs):
        super().__init__(**kwargs)
        self.fail = fail

    def make_entry(self, sample):
        index = self.sample_index(sample)
        return dict(sample_idx=index, value=float(self.read_embedding(sample, index)[0]))

    def compute_metrics(self, results):
        if self.fail:
            raise ZeroDivisionError('toy failure')
        return dict(indices=[e['sample_idx'] for e in results],
                    values=[e['value'] for e in results])


def _toy_samples(indices):
    return [dict(sample_idx=i, embedding=torch.full((D, ), float(i))) for i in indices]


def test_standardise_known_vector_and_constant_scores():
    # mean 2, population std sqrt(2/3): (x - 2) / 0.8164966 = -1.2247449, 0, 1.2247449
    np.testing.assert_allclose(standardise(np.array([1.0, 2.0, 3.0])),
                               [-1.2247449, 0.0, 1.2247449], atol=1e-7)
    # Shape is kept and the statistics run over all elements (a [P, k] shortlist).
    np.testing.assert_allclose(standardise(np.array([[1.0, 2.0], [3.0, 4.0]])),
                               [[-1.3416408, -0.4472136], [0.4472136, 1.3416408]], atol=1e-7)
    # A constant score carries no spread: zeros, not NaNs.
    np.testing.assert_array_equal(standardise(np.full(4, 7.5)), np.zeros(4))


def test_unique_by_index_and_all_or_none():
    entries = [dict(sample_idx=i, tag=t) for i, t in ((2, 'a'), (0, 'b'), (2, 'c'), (1, 'd'))]
    assert [(e['sample_idx'], e['tag']) for e in unique_by_index(entries)] == [(0, 'b'), (1, 'd'),
                                                                                (2, 'a')]
    assert all_or_none([dict(v=1), dict(v=2)], 'v', 'Toy')
    assert not all_or_none([dict(v=None), dict()], 'v', 'Toy')
    with pytest.raises(ValueError, match="Toy: 'v' is given for 1 of 2 images"):
        all_or_none([dict(v=1), dict(v=None)], 'v', 'Toy')


def test_stack_field_and_eval_mode():
    entries = [dict(x=torch.full((2, ), float(i))) for i in range(4)]
    assert stack_field(entries, 'x', torch.device('cpu'))[:, 0].tolist() == [0, 1, 2, 3]
    assert stack_field(entries, 'x', torch.device('cpu'), [3, 1])[:, 0].tolist() == [3, 1]
    head = QAConvHead(num_features=C, height=H, width=W).train()
    with pytest.raises(KeyError):
        with eval_mode(head):
            assert not head.training
            raise KeyError('inside')
    assert head.training  # restored even when the block fails


def test_single_process_evaluation_deduplicates_and_prefixes():
    metric = ToyMetric(prefix='toy')
    metric.process(None, _toy_samples([3, 1, 0, 2, 1, 0]))  # two padded repeats
    assert metric.evaluate(4) == {'toy/indices': [0, 1, 2, 3], 'toy/values': [0.0, 1.0, 2.0, 3.0]}
    assert metric.results == []
    metric.process(None, _toy_samples([0, 1, 1]))
    with pytest.raises(ValueError, match='ToyMetric: collected 2 distinct images, the data set '
                       'has 3'):
        metric.evaluate(3)
    failing = ToyMetric(fail=True)
    failing.process(None, _toy_samples([0]))
    with pytest.raises(ZeroDivisionError, match='toy failure'):
        failing.evaluate(1)


def test_entry_reading_names_the_metric_and_the_sample():
    metric = ToyMetric()
    with pytest.raises(KeyError, match="ToyMetric: every data sample needs the metainfo "
                       "'sample_idx'"):
        metric.process(None, [dict(embedding=torch.zeros(D))])
    with pytest.raises(KeyError, match="ToyMetric: sample 4 has no tensor 'embedding'"):
        metric.process(None, [dict(sample_idx=4)])
    with pytest.raises(ValueError, match=r'ToyMetric: embedding of sample 5 must be \[D\]'):
        metric.process(None, [dict(sample_idx=5, embedding=torch.zeros(2, D))])
    sample = dict(sample_idx=0, feature_map=torch.zeros(4, C, H, W)[1],
                  visibility=torch.ones(H * W), gt_visibility=torch.ones(1, 8, 8))
    feature_map = metric.read_feature_map(sample, 0)
    assert feature_map.dtype == torch.float16  # half the memory of the model's float32
    assert feature_map.untyped_storage().nbytes() == C * H * W * 2  # not the whole batch
    assert tuple(metric.read_visibility(sample, 0, (H, W)).shape) == (1, H, W)
    assert metric.read_visibility(dict(sample_idx=0), 0, (H, W)) is None
    assert tuple(metric.read_gt_visibility(sample, 0, (H, W)).shape) == (1, H, W)
    with pytest.raises(ValueError, match=r'ToyMetric: visibility of sample 0 must be \[1, 2, 2\]'):
        metric.read_visibility(dict(sample, visibility=torch.ones(1, 3, 3)), 0, (H, W))


def test_argument_checks_and_matcher_binding():
    with pytest.raises(ValueError, match='collect_device'):
        ToyMetric(collect_device='tpu')
    with pytest.raises(ValueError, match='gather_chunk must be an integer >= 1'):
        ToyMetric(gather_chunk=0)
    with pytest.raises(TypeError, match=r'ToyMetric.bind_matcher: .*match\(\.\.\.\) and '
                       r'match_pairs\(\.\.\.\)'):
        ToyMetric().bind_matcher(torch.nn.Linear(2, 2))
    metric = ToyMetric()
    with pytest.raises(RuntimeError, match=r"ToyMetric: score types \['qaconv'\] need"):
        metric.bound_matcher(['qaconv'])
    head = QAConvHead(num_features=C, height=H, width=W)
    metric.bind_matcher(head)
    assert metric.bound_matcher(['qaconv']) == (head, torch.device('cpu'))
    with pytest.raises(TypeError):
        BaseFaceMetric()  # abstract: no entries, no metrics


# ----------------------------------------------------------------- distributed (gloo, CPU) ----
WORLD_SIZE = 2
GALLERY = [0, 1, 2, 2, 3]
PROBES = [0, 1, 2, 3, 5, 6]  # 5 and 6 are not in the gallery; 11 images, padded to 12


def _id_samples(seed=0):
    g = torch.Generator().manual_seed(seed)
    ident_emb = F.normalize(torch.randn(7, D, generator=g), dim=1)
    ident_map = torch.randn(7, C, H, W, generator=g)
    samples = []
    for i, (role, label) in enumerate([('gallery', lab) for lab in GALLERY] +
                                      [('probe', lab) for lab in PROBES]):
        samples.append(
            dict(sample_idx=i, role=role, gt_label=torch.tensor([label]),
                 embedding=F.normalize(ident_emb[label] + torch.randn(D, generator=g), dim=0),
                 feature_map=F.normalize(ident_map[label] + torch.randn(C, H, W, generator=g),
                                         dim=0),
                 visibility=torch.rand(1, H, W, generator=g)))
    return samples


def _id_metric(**kwargs):
    head = QAConvHead(num_features=C, height=H, width=W)
    with torch.no_grad():  # the same weights on every rank, whatever the random state
        head.bn.running_mean.fill_(0.3)
        head.logit_bn.running_var.fill_(2.0)
        head.fc.weight.copy_(torch.linspace(0.1, 0.4, H * W).view(1, -1))
        head.fc.bias.fill_(0.05)
    metric = FaceIdentificationMetric(topk=(1, 2), fpir=(0.5, ), shortlist_k=3, **kwargs)
    metric.dataset_meta = dict(name='toy')
    metric.bind_matcher(head)
    return metric


def _id_run(metric, samples, order):
    order = list(order)
    for start in range(0, len(order), 2):
        metric.process(None, [samples[i] for i in order[start:start + 2]])
    return metric.evaluate(len(samples))


def _dist_worker(rank, port, out_dir):
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD_SIZE)
    try:
        outcome = {}
        # Every rank holds images 0..2 plus its own share: duplicates across ranks and rounds.
        toy = ToyMetric(gather_chunk=1)
        toy.process(None, _toy_samples([0, 1, 2] + list(range(3 + rank, 9, WORLD_SIZE))))
        outcome['toy'] = toy.evaluate(9)
        failing = ToyMetric(fail=True, gather_chunk=1)
        failing.process(None, _toy_samples([rank]))
        try:
            failing.evaluate(2)
        except Exception as error:  # noqa: BLE001  (the test inspects the type)
            outcome['error'] = f'{type(error).__name__}: {error}'
        samples = _id_samples()
        for device in ('cpu', 'gpu'):
            sampler = DefaultSampler(list(range(len(samples))), shuffle=True, seed=1)
            metric = _id_metric(gather_chunk=2, collect_device=device)
            outcome[f'identification_{device}'] = _id_run(metric, samples, sampler)
            outcome['local'] = len(list(sampler))
        with open(f'{out_dir}/rank{rank}.json', 'w') as f:
            json.dump(outcome, f)
    finally:
        torch_dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_distributed_gathering_deduplicates_and_reports_rank0_errors(tmp_path):
    samples = _id_samples()
    single = _id_run(_id_metric(), samples, range(len(samples)))
    assert 'toy/combined/rank-1' in single and 'toy/qaconv/shortlist_recall' in single
    mp.spawn(_dist_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE)
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f'rank{rank}.json') as f:
            outcome = json.load(f)
        assert outcome['toy'] == dict(indices=list(range(9)), values=[float(i) for i in range(9)])
        # Rank 0 re-raises its own error; the other ranks get it as a RuntimeError.
        expected = ('ZeroDivisionError: toy failure' if rank == 0 else
                    'RuntimeError: ToyMetric failed on rank 0: ZeroDivisionError: toy failure')
        assert outcome['error'] == expected
        # Identification on the chunked gathering: the padded image is dropped by sample_idx
        # and every rank receives rank 0's result, equal to the single-process run.
        assert outcome['local'] == 6  # 12 indices for 11 images: one padded
        assert outcome['identification_cpu'] == pytest.approx(single)
        assert outcome['identification_gpu'] == pytest.approx(single)
