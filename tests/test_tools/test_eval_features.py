"""tools/analysis_tools/eval_features.py on dumps written by DumpFaceFeatures: the online
numbers, set order, score-type / weight overrides, JSON output and errors."""
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from tool_module import load_tool

from mmoaml.evaluation import DumpFaceFeatures, FaceVerificationMetric
from mmoaml.models import QAConvHead

C, H, W = 8, 2, 2
METRIC_CFG = dict(nfolds=2, far=(0.5, ), score_types=('adaface', 'qaconv', 'combined'))


eval_features = load_tool('analysis_tools/eval_features.py', 'eval_features')


def _samples(seed, num_pairs=6):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for k in range(num_pairs):
        issame = k % 2 == 0
        emb = F.normalize(torch.randn(2, 16, generator=g), dim=1)
        maps = torch.randn(2, C, H, W, generator=g)
        if issame:
            emb[1] = F.normalize(emb[0] + emb[1], dim=0)
            maps[1] = maps[0] + maps[1]
        vis = torch.rand(2, 1, H, W, generator=g)
        gt = (torch.rand(2, 1, 4, 4, generator=g) < 0.7).float()
        samples += [dict(sample_idx=2 * k + j, pair_idx=k, issame=issame, embedding=emb[j],
                         feature_map=F.normalize(maps[j], dim=0), visibility=vis[j],
                         gt_visibility=gt[j]) for j in range(2)]
    return samples


def _evaluate(metric, name, samples, head):
    metric.dataset_meta = dict(name=name)
    metric.bind_matcher(head)
    metric.process(None, samples)
    return metric.evaluate(len(samples))


@pytest.fixture
def dump_dir(tmp_path):
    """Two sets dumped like tools/test.py --dump does, and their online metrics."""
    head = QAConvHead(num_features=C, height=H, width=W)
    with torch.no_grad():
        head.logit_bn.running_mean.fill_(0.5)
    online = {}
    for seed, name in enumerate(('zeta', 'alpha')):
        samples = _samples(seed)
        online.update(_evaluate(FaceVerificationMetric(**METRIC_CFG), name, samples, head))
        _evaluate(DumpFaceFeatures(str(tmp_path), metric_cfg=METRIC_CFG), name, samples, head)
    return dict(path=tmp_path, online=online, head=head)


def _row_names(printed):
    return [line.split('|')[1].strip() for line in printed.splitlines()[2:]]


def test_same_numbers_as_online_for_the_recorded_sets_in_their_order(dump_dir, capsys):
    path = dump_dir['path']
    # 'ident' (no verification metric) has no dump; 'old.npz' is left from another run.
    (path / 'metrics.json').write_text(json.dumps(dict(sets=['zeta', 'ident', 'alpha'])))
    shutil.copy(path / 'alpha.npz', path / 'old.npz')
    metrics = eval_features.main([str(path)])
    assert metrics == dump_dir['online']
    assert _row_names(capsys.readouterr().out) == ['zeta', 'alpha', 'mean']


def test_alphabetical_order_without_the_online_record(dump_dir, capsys):
    eval_features.main([str(dump_dir['path'])])
    assert _row_names(capsys.readouterr().out) == ['alpha', 'zeta', 'mean']


def test_score_types_and_combine_weights_override_the_dumped_config(dump_dir, tmp_path):
    out = tmp_path / 'offline.json'
    metrics = eval_features.main([
        str(dump_dir['path']), '--score-types', 'qaconv_gt', 'qaconv_none', 'combined',
        '--combine-weights', '0.2', '0.8', '--device', 'cpu', '--out', str(out)
    ])
    expected = {}
    for seed, name in enumerate(('alpha', 'zeta')):
        metric = FaceVerificationMetric(nfolds=2, far=(0.5, ), combine_weights=(0.2, 0.8),
                                        score_types=('qaconv_gt', 'qaconv_none', 'combined'))
        expected.update(_evaluate(metric, name, _samples(1 - seed), dump_dir['head']))
    assert metrics == expected
    assert json.loads(out.read_text()) == metrics


def test_folder_without_dumps_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='no <set>.npz feature dumps'):
        eval_features.main([str(tmp_path)])
