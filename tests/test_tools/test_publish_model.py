"""tools/model_converters/publish_model.py: weights-only copy named by its SHA-256."""
import hashlib
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'model_converters' / 'publish_model.py'


class Opaque:
    """A custom object: the safe loader refuses files that pickle it."""


def _load_tool():
    return load_tool('model_converters/publish_model.py', 'mmoaml_publish_model')


def _training_checkpoint(path, **meta):
    """What MMEngine's CheckpointHook writes: meta with numpy values, weights, training state."""
    state_dict = OrderedDict(weight=torch.arange(6.0).view(2, 3), bias=torch.tensor([0.5, -1.0]))
    history = HistoryBuffer()
    history.update(1.5)
    checkpoint = dict(
        meta=dict(epoch=3, iter=300, seed=np.int64(42), best_score=np.float64(0.9123),
                  config="model = dict(type='OAML')", **meta),
        state_dict=state_dict,
        message_hub=dict(log_scalars={'train/loss': history}, runtime_info={}),
        optimizer=dict(state={0: dict(momentum_buffer=torch.ones(2, 3))},
                       param_groups=[dict(lr=0.1, params=[0, 1])]),
        param_schedulers=[dict(last_step=300)])
    torch.save(checkpoint, path)
    return state_dict


def test_cli_writes_a_weights_only_file_named_by_its_hash(tmp_path):
    src = tmp_path / 'epoch_3.pth'
    state_dict = _training_checkpoint(src)
    out = subprocess.run([sys.executable, str(TOOL), str(src), str(tmp_path / 'oaml_ir50.pth')],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode == 0, out.stdout
    published = list(tmp_path.glob('oaml_ir50-*.pth'))
    assert len(published) == 1 and published[0].name in out.stdout
    digest = hashlib.sha256(published[0].read_bytes()).hexdigest()
    assert published[0].name == f'oaml_ir50-{digest[:8]}.pth'
    assert not list(tmp_path.glob('*publishing*'))  # no temporary file left behind

    checkpoint = torch.load(published[0], map_location='cpu', weights_only=True)  # no opt-in
    assert sorted(checkpoint) == ['meta', 'state_dict']
    assert checkpoint['meta'] == dict(epoch=3, iter=300, seed=42, best_score=0.9123,
                                      config="model = dict(type='OAML')")
    assert type(checkpoint['meta']['seed']) is int
    assert sorted(checkpoint['state_dict']) == sorted(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(checkpoint['state_dict'][key], value)


def test_name_without_pth_suffix_gets_one(tmp_path):
    src = tmp_path / 'latest.pth'
    _training_checkpoint(src)
    final = _load_tool().publish(str(src), str(tmp_path / 'model'))
    assert Path(final).parent == tmp_path
    assert Path(final).name.startswith('model-') and final.endswith('.pth')
    assert len(Path(final).stem) == len('model-') + 8


def test_untrusted_objects_are_refused_unless_trusted(tmp_path):
    src = tmp_path / 'custom.pth'
    _training_checkpoint(src, extra=Opaque())
    tool = _load_tool()
    with pytest.raises(SystemExit, match='--trust'):
        tool.publish(str(src), str(tmp_path / 'custom_pub.pth'))
    assert not list(tmp_path.glob('custom_pub*'))
    final = tool.publish(str(src), str(tmp_path / 'custom_pub.pth'), trust=True)
    checkpoint = torch.load(final, map_location='cpu', weights_only=True)
    assert 'extra' not in checkpoint['meta'] and checkpoint['meta']['epoch'] == 3


def _threshold_json(path, **data):
    path.write_text(json.dumps(data))
    return str(path)


def test_threshold_json_goes_into_the_published_meta(tmp_path):
    src = tmp_path / 'epoch_3.pth'
    state_dict = _training_checkpoint(src)
    thresholds = _threshold_json(
        tmp_path / 'verification_threshold.json', verification_far=0.001,
        verification_threshold=dict(adaface=0.31, qaconv=2.5), verification_set='lfw',
        per_set=dict(lfw=dict(adaface=0.31)))
    out = subprocess.run([sys.executable, str(TOOL), str(src), str(tmp_path / 'pub.pth'),
                          '--threshold-json', thresholds],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode == 0, out.stdout
    published = list(tmp_path.glob('pub-*.pth'))
    assert len(published) == 1
    digest = hashlib.sha256(published[0].read_bytes()).hexdigest()
    assert published[0].name == f'pub-{digest[:8]}.pth'  # the hash of the final file
    checkpoint = torch.load(published[0], map_location='cpu', weights_only=True)
    meta = checkpoint['meta']
    assert meta['verification_threshold'] == dict(adaface=0.31, qaconv=2.5)
    assert meta['verification_far'] == 0.001
    assert 'verification_set' not in meta and 'per_set' not in meta  # only the two keys
    assert meta['epoch'] == 3 and sorted(checkpoint['state_dict']) == sorted(state_dict)


@pytest.mark.parametrize('data, message', [
    (dict(verification_far=0.001), 'verification_threshold'),
    (dict(verification_far=0.001, verification_threshold={}), 'verification_threshold'),
    (dict(verification_far=0.001, verification_threshold=dict(adaface='0.3')),
     'verification_threshold'),
    (dict(verification_threshold=dict(adaface=0.3)), 'verification_far'),
    (dict(verification_threshold=dict(adaface=0.3), verification_far=2.0), 'verification_far'),
])
def test_bad_threshold_json_is_refused_before_writing(tmp_path, data, message):
    src = tmp_path / 'epoch_3.pth'
    _training_checkpoint(src)
    with pytest.raises(ValueError, match=message):
        _load_tool().publish(str(src), str(tmp_path / 'pub.pth'),
                             threshold_json=_threshold_json(tmp_path / 't.json', **data))
    assert not list(tmp_path.glob('pub*'))
