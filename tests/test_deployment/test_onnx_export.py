"""ONNX export of OAML (mmoaml.deployment.export, tools/deployment/pytorch2onnx.py): ONNX Runtime
against PyTorch, the graph against OAML.predict, and the tool's CLI."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmoaml.deployment import (OAMLExportWrapper, export_onnx, load_qaconv_params,
                               onnx_runtime_parity, qaconv_pair_scores, qaconv_scores,
                               random_images)
from mmoaml.registry import MODELS

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'deployment' / 'pytorch2onnx.py'
SIZE = 32  # tiny faces: 2x2 body map
TOL = 1e-4
OUTPUTS = ('embedding', 'norm', 'feature_map', 'visibility')


def _cfg(occlusion=True, to_rgb=False):
    cfg = dict(
        type='OAML',
        _scope_='mmoaml',
        data_preprocessor=dict(type='FaceDataPreprocessor', to_rgb=to_rgb,
                               mean=(120.0, 127.5, 131.0), std=(60.0, 64.0, 70.0)),
        backbone=dict(type='IResNet', depth=18, input_size=SIZE, stem_channels=8,
                      stage_channels=(8, 16, 16, 32), stage_units=(1, 1, 1, 1)),
        neck=dict(type='FaceEmbeddingNeck', in_channels=32, feat_size=2, embed_dim=16),
        adaface_head=dict(type='AdaFaceHead', embed_dim=16, num_classes=4),
        qaconv_head=dict(type='QAConvHead', num_features=32, height=2, width=2))
    if occlusion:
        cfg['occlusion_head'] = dict(type='OcclusionHead', in_channels=32, mid_channels=8)
    return cfg


def _model(seed=0, **kwargs):
    """A tiny OAML whose BatchNorm statistics are not the defaults (as after training)."""
    torch.manual_seed(seed)
    model = MODELS.build(_cfg(**kwargs))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.1, 0.1)
    return model.eval()


def _export(tmp_path, name='model.onnx', **kwargs):
    model = _model(**kwargs)
    path = str(tmp_path / name)
    graph = export_onnx(model, path, batch=2)
    return model, graph, path


def test_onnx_runtime_equals_pytorch_at_two_batch_sizes(tmp_path):
    _, graph, path = _export(tmp_path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ['images']
    assert [o.name for o in proto.graph.output] == list(OUTPUTS)
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == 'batch'  # dynamic batch
    parity = onnx_runtime_parity(graph, path, batch_sizes=(1, 3), threads=1)
    for batch, diffs in parity.items():
        print(f'onnxruntime vs torch, batch {batch}: ' +
              ', '.join(f'{name} {diff:.3g}' for name, diff in diffs.items()))
        assert set(diffs) == set(OUTPUTS)
        assert max(diffs.values()) <= TOL, (batch, diffs)


def test_graph_outputs_are_what_predict_computes(tmp_path):
    """feature_map and visibility as OAML.predict stores them; flip fusion = two calls."""
    model, _, path = _export(tmp_path)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    images = random_images(3, (SIZE, SIZE), seed=5)
    embedding, norm, fmap, vis = session.run(list(OUTPUTS), {'images': images})
    f_emb, f_norm = session.run(['embedding', 'norm'],
                                {'images': np.ascontiguousarray(images[..., ::-1])})
    fused = embedding * norm + f_emb * f_norm
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    with torch.no_grad():
        inputs = model.data_preprocessor(dict(inputs=torch.from_numpy(images).byte()))['inputs']
        samples = model.predict(inputs)
    assert model.visibility_weighting  # so predict stores the visibility
    np.testing.assert_allclose(fused, np.stack([s.embedding.numpy() for s in samples]),
                               atol=1e-5)
    # predict stores float16 maps.
    np.testing.assert_allclose(fmap, np.stack([s.feature_map.float().numpy() for s in samples]),
                               atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(fmap, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vis, np.stack([s.visibility.numpy() for s in samples]),
                               atol=1e-5)
    assert embedding.shape == (3, 16) and norm.shape == (3, 1) and vis.shape == (3, 1, 2, 2)


def test_rgb_preprocessor_and_no_occlusion_head(tmp_path):
    model, graph, path = _export(tmp_path, occlusion=False, to_rgb=True)
    assert graph.output_names == OUTPUTS[:3]
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS[:3])
    images = random_images(2, (SIZE, SIZE), seed=7)
    embedding, norm, _ = session.run(None, {'images': images})
    with torch.no_grad():
        inputs = model.data_preprocessor(dict(inputs=torch.from_numpy(images).byte()))['inputs']
        feats = model.extract_feat(inputs)
    np.testing.assert_allclose(embedding, feats['embedding'].numpy(), atol=1e-5)
    np.testing.assert_allclose(norm, feats['norm'].numpy(), rtol=1e-5)


def test_wrapper_refuses_a_model_without_face_preprocessing():
    model = _model()
    model.data_preprocessor = torch.nn.Identity()
    with pytest.raises(TypeError, match='FaceDataPreprocessor'):
        OAMLExportWrapper(model)


def _write_config(tmp_path):
    config = tmp_path / 'tiny_oaml.py'
    config.write_text(f"default_scope = 'mmoaml'\nmodel = {_cfg()!r}\n")
    return config


def _run_tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)


def test_cli_exports_checks_and_writes_qaconv_params(tmp_path):
    model = _model(seed=3)
    config = _write_config(tmp_path)
    checkpoint = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), checkpoint)
    out, npz = tmp_path / 'tiny.onnx', tmp_path / 'tiny_qaconv.npz'
    result = _run_tool(config, checkpoint, '--out', out, '--qaconv-params', npz, '--check')
    print(result.stdout)
    assert result.returncode == 0, result.stdout
    assert 'check batch 1:' in result.stdout and 'check batch 3:' in result.stdout
    assert 'check passed' in result.stdout
    assert out.is_file() and npz.is_file()

    # End to end: maps from ONNX Runtime, scored in NumPy, against the PyTorch head.
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    images = random_images(4, (SIZE, SIZE), seed=11)
    _, _, fmap, vis = session.run(None, {'images': images})
    vis[0, :, 1] = 0  # a hidden row
    params = load_qaconv_params(str(npz))
    with torch.no_grad():
        feats = model.extract_feat(
            model.data_preprocessor(dict(inputs=torch.from_numpy(images).byte()))['inputs'])
        fmap_t, vis_t = feats['feature_map'], torch.from_numpy(vis)
        expected = model.qaconv_head.match(fmap_t, fmap_t, vis_t, vis_t).numpy()
        expected_pairs = model.qaconv_head.match_pairs(fmap_t[:2], fmap_t[2:], vis_t[:2],
                                                       vis_t[2:]).numpy()
    got = qaconv_scores(fmap, fmap, vis, vis, params=params)
    got_pairs = qaconv_pair_scores(fmap[:2], fmap[2:], vis[:2], vis[2:], params=params)
    print(f'onnx maps + numpy qaconv vs torch: match {np.abs(got - expected).max():.3g}, '
          f'match_pairs {np.abs(got_pairs - expected_pairs).max():.3g}')
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got_pairs, expected_pairs, atol=1e-4)


def test_cli_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    config = _write_config(tmp_path)
    state_dict = _model().state_dict()
    state_dict.pop('qaconv_head.fc.weight')
    checkpoint = tmp_path / 'partial.pth'
    torch.save(dict(state_dict=state_dict), checkpoint)
    out = tmp_path / 'partial.onnx'
    result = _run_tool(config, checkpoint, '--out', out)
    assert result.returncode != 0
    assert 'missing keys' in result.stdout and 'qaconv_head.fc.weight' in result.stdout
    assert not out.exists()


def test_dynamo_exporter_gives_the_same_graph(tmp_path):
    """torch's dynamo-based exporter (the default of torch.onnx.export since torch 2.9)."""
    pytest.importorskip('onnxscript')
    model = _model()
    path = str(tmp_path / 'dynamo.onnx')
    graph = export_onnx(model, path, batch=2, opset=18, dynamo=True)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    parity = onnx_runtime_parity(graph, path, batch_sizes=(1, 3), threads=1)
    for batch, diffs in parity.items():
        print(f'onnxruntime vs torch (dynamo exporter), batch {batch}: ' +
              ', '.join(f'{name} {diff:.3g}' for name, diff in diffs.items()))
        assert max(diffs.values()) <= TOL, (batch, diffs)
