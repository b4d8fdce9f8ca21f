"""A margin head as the head of MMPretrain's ImageClassifier, built from a config."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample

CLASSIFIER_CFG = """
custom_imports = dict(imports=['mmoaml.models'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='mmoaml.IResNet', depth=18, input_size=32, stem_channels=8,
                  stage_channels=(8, 16, 32, 32), stage_units=(1, 1, 1, 1)),
    neck=dict(type='mmoaml.FaceEmbeddingNeck', in_channels=32, feat_size=2, embed_dim=16,
              dropout=0.0),
    head=dict(type='mmoaml.{head}', embed_dim=16, num_classes=4, s=16.,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
"""


def _batch():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = [i % 4 for i in range(8)]
    for i, label in enumerate(labels):  # each class gets its own brightness: learnable
        inputs[i] = (inputs[i] // 4 + 60 * label).to(torch.uint8)
    return dict(inputs=list(inputs), data_samples=[DataSample().set_gt_label(y) for y in labels])


@pytest.mark.parametrize('head', ['AdaFaceHead', 'ArcFaceHead', 'CosFaceHead'])
def test_margin_head_trains_inside_an_mmpretrain_image_classifier(head):
    cfg = Config.fromstring(CLASSIFIER_CFG.replace('{head}', head), '.py')
    torch.manual_seed(0)
    model = MMPRETRAIN_MODELS.build(cfg.model)
    assert type(model).__name__ == 'ImageClassifier' and type(model.head).__name__ == head
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    losses = [float(model.train_step(copy.deepcopy(_batch()), wrapper)['loss'].detach())
              for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])  # it learns

    model.eval()
    with torch.no_grad():
        out = model.test_step(_batch())
    assert tuple(out[0].pred_score.shape) == (4, )
    torch.testing.assert_close(out[0].pred_score.sum(), torch.tensor(1.0))
    accuracy = sum(int(s.pred_label) == int(s.gt_label) for s in out) / len(out)
    assert accuracy >= 0.75


def test_margin_head_loss_is_the_weighted_cross_entropy_of_its_margin_logits():
    from mmoaml.models import AdaFaceHead
    torch.manual_seed(0)
    head = AdaFaceHead(embed_dim=8, num_classes=5,
                       loss=dict(type='CrossEntropyLoss', loss_weight=0.25))
    embedding = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    norm = torch.rand(4, 1) * 30
    labels = [0, 1, 2, 3]
    samples = [DataSample().set_gt_label(y) for y in labels]
    head.eval()  # the EMA buffers stay put, so the logits below are the ones the loss saw
    logits = head(embedding, norm, torch.tensor(labels))
    picked = logits[torch.arange(4), torch.tensor(labels)]
    expected = 0.25 * (torch.logsumexp(logits, dim=1) - picked).mean()
    torch.testing.assert_close(head.loss((embedding, norm), samples)['loss'], expected)
    with pytest.raises(ValueError, match=r'data_samples\[1\] has no gt_label'):
        head.loss((embedding, norm), [samples[0], DataSample(), *samples[2:]])
    with pytest.raises(TypeError, match='neck output'):
        head.loss(embedding, samples)
