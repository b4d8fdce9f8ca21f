"""tools/analysis_tools/visibility_by_style.py: rows per occluder and style group, the true
visibility from the drawn masks, the prediction from the model, and errors."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from tool_module import load_tool

from mmoaml.apis import init_model
from mmoaml.datagen import SynthFaceGenerator
from mmoaml.fileio import dump_verification_bin
from mmoaml.registry import TRANSFORMS
from mmoaml.utils import register_all_modules

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


tool = load_tool('analysis_tools/visibility_by_style.py', 'visibility_by_style')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny OAML config, its random-weight checkpoint and a .bin of 4 SynthFace crops."""
    register_all_modules()
    root = tmp_path_factory.mktemp('vis')
    config = root / 'tiny_oaml.py'
    base = osp.join(REPO, 'configs', 'oaml_synthface.py')
    config.write_text(f'_base_ = [{base!r}]\nmodel = dict(adaface_head=dict(num_classes=4))\n')
    torch.manual_seed(0)
    model = init_model(str(config))
    checkpoint = root / 'tiny.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    gen = SynthFaceGenerator(seed=0)
    crops = [gen.render_identity(i, 0).img for i in range(4)]
    faces = root / 'faces.bin'
    dump_verification_bin(str(faces), [cv2.imencode('.png', c)[1].tobytes() for c in crops],
                          [False, False])
    return str(config), str(checkpoint), str(faces), model, crops


def test_rows_compare_the_model_with_the_drawn_masks(files, tmp_path):
    config, checkpoint, faces, model, crops = files
    out = tmp_path / 'rows.json'
    rows = tool.main([config, checkpoint, faces, '--occluders', 'NiqabOcclusion',
                      'SunglassesOcclusion', '--styles', 'train', 'val', '--out', str(out)])
    # Sunglasses define no validation styles: no 'val' row for them.
    assert [(r['occluder'], r['styles']) for r in rows] == [
        ('NiqabOcclusion', 'train'), ('NiqabOcclusion', 'val'), ('SunglassesOcclusion', 'train')]
    assert json.loads(out.read_text()) == rows
    niqab_val = rows[1]
    # The true visibility: the drawn pixel masks of the same seeded occluder, whose mean the
    # 16x16-pixel cells of the 7x7 grid keep exactly.
    occluder = TRANSFORMS.build(dict(type='NiqabOcclusion', prob=1.0, styles='val', seed=0))
    drawn = [occluder(dict(img=c, sample_idx=i)) for i, c in enumerate(crops)]
    true_mean = np.mean([d['visibility_mask'].mean() for d in drawn])
    assert niqab_val['faces'] == 4
    assert niqab_val['mean_gt'] == pytest.approx(true_mean, abs=1e-6)
    # The prediction: the model's own visibility maps of the occluded crops.
    batch = torch.from_numpy(np.stack([d['img'] for d in drawn])).permute(0, 3, 1, 2)
    with torch.no_grad():
        samples = model.test_step(dict(inputs=batch))
    pred = torch.stack([s.visibility for s in samples]).float().clamp(0, 1)
    assert niqab_val['mean_pred'] == pytest.approx(float(pred.mean()), abs=1e-5)


def test_each_gives_one_row_per_style(files):
    config, checkpoint, faces, _, _ = files
    rows = tool.main([config, checkpoint, faces, '--occluders', 'MedicalMaskOcclusion',
                      '--styles', 'each', '--num-faces', '2'])
    from mmoaml.datasets.transforms import MedicalMaskOcclusion
    assert [r['styles'] for r in rows] == list(MedicalMaskOcclusion.STYLES)
    assert all(r['faces'] == 2 for r in rows)


def test_errors_name_the_argument(files):
    config, checkpoint, faces, _, _ = files
    with pytest.raises(SystemExit, match='PackFaceInputs.*not a registered occluder'):
        tool.main([config, checkpoint, faces, '--occluders', 'PackFaceInputs'])
    with pytest.raises(SystemExit):
        tool.main([config, checkpoint, faces, '--num-faces', '0'])
