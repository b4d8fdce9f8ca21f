"""mmoaml.apis on a small OAML model (configs/oaml_synthface.py with 4 classes, random weights)."""
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmoaml.apis import FaceVerifier, Gallery, find_config, fixed_score_stats
from mmoaml.apis import inference as inference_module
from mmoaml.apis import init_model
from mmoaml.datagen import SynthFaceGenerator
from mmoaml.fileio import CheckpointMismatchError, CorruptImageError
from mmoaml.structures import template_points

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = {'model.adaface_head.num_classes': 4}
META = {'verification_threshold': {'adaface': 0.5, 'qaconv': 1.0}, 'verification_far': 1e-3}


def _photo_matrix(k):
    """A known similarity from crop to photo pixels (scale 1.6-2.0, rotation -12..12 deg)."""
    scale, angle = 1.6 + 0.1 * k, np.deg2rad(-12 + 5 * k)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rot, np.array([[40.0 + 3 * k], [30.0 + 2 * k]])])


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return init_model('oaml_synthface', cfg_options=SMALL)


@pytest.fixture(scope='module')
def verifier(model):
    return FaceVerifier(model)


@pytest.fixture(scope='module')
def faces():
    """3 identities x 2 images: crops [6, 112, 112, 3] uint8 BGR, photos and their landmarks."""
    gen = SynthFaceGenerator(seed=0)
    rendered = [gen.render_identity(i, j) for i in range(3) for j in range(2)]
    crops = np.stack([f.img for f in rendered])
    photos, landmarks = [], []
    for k, face in enumerate(rendered):
        m = _photo_matrix(k)
        photos.append(cv2.warpAffine(face.img, m, (300, 280), flags=cv2.INTER_CUBIC,
                                     borderValue=(90, 90, 90)))
        # The face's own landmarks sit near (not on) the template; map them to the photo.
        landmarks.append(face.landmarks @ m[:, :2].T + m[:, 2])
    return crops, photos, np.stack(landmarks), np.stack([f.landmarks for f in rendered])


@pytest.fixture(scope='module')
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': META}, path)
    return str(path)


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'tiny_oaml.py'
    base = osp.join(REPO, 'configs', 'oaml_synthface.py')
    path.write_text(f'_base_ = [{base!r}]\nmodel = dict(adaface_head=dict(num_classes=4))\n')
    return str(path)


def _predict(model, crops):
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2)
    with torch.no_grad():
        return model.test_step(dict(inputs=batch))


def test_embed_is_the_flip_fused_prediction_for_every_input_kind(verifier, model, faces, tmp_path):
    crops = faces[0]
    emb = verifier.embed(crops)
    samples = _predict(model, crops)
    expected = torch.stack([s.embedding for s in samples]).numpy()
    assert emb.shape == (6, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    paths = []
    for i, crop in enumerate(crops[:2]):
        paths.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(paths[-1], crop)
    tensor = torch.from_numpy(crops[:2]).permute(0, 3, 1, 2)
    for images, kwargs in ((paths, {}), (crops[:2, ..., ::-1].copy(), dict(rgb=True)),
                           (tensor, {}), (tensor.float(), {}), (list(tensor), {}),
                           (list(crops[:2].astype(np.float32)), {})):
        np.testing.assert_allclose(verifier.embed(images, **kwargs), emb[:2], atol=1e-5)
    np.testing.assert_allclose(verifier.embed(paths[0]), emb[:1], atol=1e-5)
    np.testing.assert_allclose(verifier.embed(crops[0]), emb[:1], atol=1e-5)


def test_photos_with_landmarks_are_aligned(verifier, faces):
    crops, photos, landmarks, crop_landmarks = faces
    aligned = verifier.aligned(photos, landmarks=landmarks)
    direct = verifier.aligned(crops, landmarks=crop_landmarks)  # same warp on the crop itself
    for a, d in zip(aligned, direct):
        inner = (slice(10, -10), slice(10, -10))
        assert np.abs(a[inner].astype(int) - d[inner].astype(int)).mean() < 4
    emb_photo = verifier.embed(photos, landmarks=landmarks)
    emb_direct = verifier.embed(crops, landmarks=crop_landmarks)
    cosines = (emb_photo * emb_direct).sum(1)  # a random model: resampling moves it a little
    assert cosines.min() > 0.9 and cosines.mean() > 0.97
    # A list mixing aligned crops (None) and photos.
    mixed = verifier.embed([crops[0], photos[1]], landmarks=[None, landmarks[1]])
    np.testing.assert_allclose(mixed[1], emb_photo[1], atol=1e-5)


def test_chunks_give_the_result_of_one_batch(model, faces):
    crops, photos, landmarks, _ = faces
    one, chunked = FaceVerifier(model, batch_size=64), FaceVerifier(model, batch_size=4)
    np.testing.assert_allclose(chunked.embed(crops), one.embed(crops), atol=1e-5)
    np.testing.assert_allclose(chunked.visibility(photos, landmarks=landmarks),
                               one.visibility(photos, landmarks=landmarks), atol=1e-5)
    a, b = crops[0::2], crops[1::2]
    for x, y in zip(FaceVerifier(model, batch_size=2).verify(a, b), one.verify(a, b)):
        assert x['adaface'] == pytest.approx(y['adaface'], abs=1e-5)
        assert x['qaconv'] == pytest.approx(y['qaconv'], abs=1e-4)


def test_visibility_maps(verifier, model, faces):
    crops = faces[0]
    vis = verifier.visibility(crops)
    expected = torch.stack([s.visibility for s in _predict(model, crops)])[:, 0].numpy()
    assert vis.shape == (6, 7, 7)
    np.testing.assert_allclose(vis, np.clip(expected, 0, 1), atol=1e-5)
    assert verifier.visibility(crops[:2], size=(112, 96)).shape == (2, 112, 96)
    overlays = verifier.overlay(crops[:2])
    assert len(overlays) == 2 and overlays[0].shape == (112, 112, 3)


def test_visibility_needs_an_occlusion_head(verifier):
    adaface = FaceVerifier(init_model('adaface_synthface', cfg_options=SMALL))
    with pytest.raises(ValueError, match='adaface_synthface.*no occlusion head'):
        adaface.visibility(np.zeros((112, 112, 3), np.uint8))
    # Verification and search fall back on the cosine.
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    result = adaface.verify(crops[:1], crops[1:], threshold={'adaface': 0.5})[0]
    assert result['qaconv'] is None and result['score_type'] == 'adaface'
    gallery = adaface.build_gallery(crops, [0, 1])
    assert gallery.feature_maps is None
    assert adaface.search(crops[:1], gallery, top_k=1)[0][0]['qaconv'] is None
    with pytest.raises(ValueError, match='gallery has no feature maps'):
        verifier.search(crops[:1], gallery)
    with pytest.raises(ValueError, match='does not weight QAConv.*has visibility'):
        unweighted = FaceVerifier(verifier.model)
        unweighted.weighted = False
        unweighted.search(crops[:1], verifier.build_gallery(crops, [0, 1]))


def test_verify_scores_and_thresholds(model, faces):
    crops = faces[0]
    a, b = crops[0::2], crops[1::2]
    verifier = FaceVerifier(model)
    results = verifier.verify(a, b)
    ea, eb = verifier.embed(a), verifier.embed(b)
    for k, r in enumerate(results):
        assert r['adaface'] == pytest.approx(float(ea[k] @ eb[k]), abs=1e-5)
        assert r['combined'] is None and r['same'] is None and r['threshold'] is None
    samples_a, samples_b = _predict(model, a), _predict(model, b)
    with torch.no_grad():
        qaconv = model.qaconv_head.match_pairs(
            torch.stack([s.feature_map for s in samples_a]).float(),
            torch.stack([s.feature_map for s in samples_b]).float(),
            torch.stack([s.visibility for s in samples_a]),
            torch.stack([s.visibility for s in samples_b]))
    np.testing.assert_allclose([r['qaconv'] for r in results], qaconv.numpy(), atol=1e-4)
    # A per-call number needs the score type; a dict does not.
    with pytest.raises(ValueError, match='score_type'):
        verifier.verify(a, b, threshold=0.3)
    r = verifier.verify(a, b, threshold=-1.0, score_type='adaface')[0]
    assert r['same'] is True and r['threshold'] == -1.0 and r['score_type'] == 'adaface'
    r = FaceVerifier(model, threshold={'qaconv': 1e9}).verify(a, b)[0]
    assert r['score_type'] == 'qaconv' and r['same'] is False
    # Combined needs fixed statistics.
    with pytest.raises(ValueError, match='no combined score'):
        verifier.verify(a, b, score_type='combined')
    stats = fixed_score_stats([r['adaface'] for r in results], [r['qaconv'] for r in results])
    fused = FaceVerifier(model, score_stats=stats, threshold={'combined': 0.0}).verify(a, b)
    z = [np.array([x[t] for x in results]) for t in ('adaface', 'qaconv')]
    expected = 0.5 * (z[0] - z[0].mean()) / z[0].std() + 0.5 * (z[1] - z[1].mean()) / z[1].std()
    np.testing.assert_allclose([r['combined'] for r in fused], expected, atol=1e-6)
    assert [r['same'] for r in fused] == [bool(e > 0) for e in expected]
    with pytest.raises(ValueError, match='pairs need equal numbers'):
        verifier.verify(a, b[:2])


def test_gallery_search_and_its_npz_round_trip(verifier, faces, tmp_path):
    crops, photos, landmarks, _ = faces
    gallery = verifier.build_gallery(crops[0::2], labels=[10, 11, 12],
                                     names=['x', 'y', 'z'])
    assert len(gallery) == 3 and gallery.visibility.shape == (3, 1, 7, 7)
    results = verifier.search(photos[1::2], gallery, top_k=2, landmarks=landmarks[1::2])
    assert len(results) == 3
    for k, found in enumerate(results):
        assert len(found) == 2 and found[0]['score'] >= found[1]['score']
        assert len({f['label'] for f in found}) == 2
        for f in found:  # the ranking score is the pair's visibility-weighted QAConv score
            pair = verifier.verify([photos[1 + 2 * k]], [crops[2 * f['index']]],
                                   landmarks_a=landmarks[1 + 2 * k][None])[0]
            assert f['qaconv'] == pytest.approx(pair['qaconv'], abs=1e-4)
            assert f['adaface'] == pytest.approx(pair['adaface'], abs=1e-5)
            assert f['name'] == 'xyz'[f['index']]
    path = gallery.save(str(tmp_path / 'gallery.npz'))
    loaded = Gallery.load(path)
    for key in ('embeddings', 'labels', 'feature_maps', 'visibility', 'names'):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(gallery, key))
    assert verifier.search(photos[1::2], path, top_k=2, landmarks=landmarks[1::2]) == results
    np.savez(tmp_path / 'other.npz', embeddings=np.zeros((2, 4)))
    with pytest.raises(ValueError, match='not an mmoaml gallery'):
        Gallery.load(str(tmp_path / 'other.npz'))
    (tmp_path / 'bad.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='bad.npz'):
        Gallery.load(str(tmp_path / 'bad.npz'))
    with pytest.raises(ValueError, match='top_k'):
        verifier.search(crops[:1], gallery, top_k=0)


@pytest.mark.parametrize('images, landmarks, error, match', [
    ('missing.png', None, FileNotFoundError, 'missing.png'),
    ('corrupt', None, CorruptImageError, 'corrupt.jpg'),
    (np.zeros((2, 112, 112, 4), np.uint8), None, ValueError, 'images'),
    ([np.zeros((112, 112, 3), np.uint8), np.zeros((112, 112), np.uint8)], None, ValueError,
     r'images\[1\]: a numpy image must be H x W x 3'),
    ([np.zeros((112, 112, 3), np.int32)], None, TypeError, r'images\[0\].*uint8 or float'),
    ([np.full((112, 112, 3), 300.0, np.float32)], None, ValueError, r'images\[0\].*\[0, 255\]'),
    ([np.zeros((112, 112, 3), np.uint8), np.zeros((200, 160, 3), np.uint8)], None, ValueError,
     r'images\[1\]: a 200x160 image needs its five landmarks'),
    (torch.zeros(2, 1, 112, 112), None, ValueError, r'images\[0\]: a tensor image'),
    (np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 4, 2)), ValueError, r'\[N, 5, 2\]'),
    ([np.zeros((200, 160, 3), np.uint8)], [np.full((5, 2), np.nan)], ValueError,
     r'images\[0\]: landmarks must be 5 finite'),
    ([], None, ValueError, 'no images'),
    (3, None, TypeError, 'images must be'),
])
def test_bad_inputs_are_named(verifier, tmp_path, images, landmarks, error, match):
    if isinstance(images, str):
        images = str(tmp_path / images)
        if images.endswith('corrupt'):
            images += '.jpg'
            with open(images, 'wb') as f:
                f.write(b'\xff\xd8 not a jpeg')
    with pytest.raises(error, match=match):
        verifier.embed(images, landmarks=landmarks)


def test_init_model_by_name_path_and_config_with_a_strict_checkpoint(model, faces, checkpoint,
                                                                    tiny_config, tmp_path):
    crops = faces[0][:2]
    expected = FaceVerifier(model).embed(crops)
    by_path = init_model(tiny_config, checkpoint)
    assert not by_path.training and by_path.checkpoint_meta == META
    np.testing.assert_allclose(FaceVerifier(by_path).embed(crops), expected, atol=1e-5)
    cfg = Config.fromfile(find_config('oaml_synthface'))
    cfg.merge_from_dict(SMALL)
    verifier = FaceVerifier(cfg, checkpoint)
    assert verifier.far == 1e-3 and 'tiny.pth' in verifier.name
    np.testing.assert_allclose(verifier.embed(crops), expected, atol=1e-5)
    r = verifier.verify(crops[:1], crops[1:])[0]  # stored thresholds decide
    assert r['score_type'] == 'qaconv' and r['threshold'] == 1.0
    assert r['same'] == (r['qaconv'] > 1.0)
    state = dict(model.state_dict())
    missing_key = next(k for k in state if k.startswith('occlusion_head.'))
    del state[missing_key]
    torch.save({'state_dict': state}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError, match=f'missing.*{missing_key}'):
        init_model(tiny_config, str(tmp_path / 'partial.pth'))
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        init_model('no_such_config')


def test_find_config_in_an_installed_package(tmp_path, monkeypatch):
    mim = tmp_path / 'mmoaml' / '.mim' / 'configs'
    mim.mkdir(parents=True)
    (mim / 'shipped.py').write_text('model = dict()\n')
    monkeypatch.setattr(inference_module, '_config_dirs',
                        lambda: [str(tmp_path / 'configs'), str(mim)])
    assert find_config('shipped') == str(mim / 'shipped.py')
    assert find_config('shipped.py') == str(mim / 'shipped.py')


def _load_demo(name):
    spec = importlib.util.spec_from_file_location(f'demo_{name}',
                                                  osp.join(REPO, 'demo', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_scripts_write_pngs(faces, checkpoint, tiny_config, tmp_path, capsys):
    crops, photos, landmarks, _ = faces
    cv2.imwrite(str(tmp_path / 'a.png'), crops[0])
    cv2.imwrite(str(tmp_path / 'b.png'), photos[1])
    (tmp_path / 'l.json').write_text(json.dumps({'a': None, 'b': landmarks[1].tolist()}))
    out = tmp_path / 'out' / 'pair.png'
    result = _load_demo('verify_pair').main([
        tiny_config, checkpoint, str(tmp_path / 'a.png'), str(tmp_path / 'b.png'),
        '--landmarks', str(tmp_path / 'l.json'), '--out', str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed['qaconv'] == pytest.approx(result['qaconv'])
    assert cv2.imread(str(out)).shape == (224, 2 * 224 + 8, 3)
    out = tmp_path / 'vis.png'
    vis = _load_demo('visibility').main([
        tiny_config, checkpoint, str(tmp_path / 'b.png'), '--landmarks',
        *map(str, landmarks[1].reshape(-1)), '--out', str(out), '--scale', '3'])
    assert vis.shape == (7, 7)
    assert cv2.imread(str(out)).shape == (336, 336, 3)


def test_alignment_recovers_a_face_placed_by_a_known_similarity(faces):
    crops, photos, landmarks, crop_landmarks = faces
    # Landmarks of the template itself, mapped into the photo, recover the rendered crop.
    from mmoaml.structures import align_face
    for k in range(2):
        m = _photo_matrix(k)
        points = template_points() @ m[:, :2].T + m[:, 2]
        aligned = align_face(photos[k], points)
        inner = (slice(10, -10), slice(10, -10))
        assert np.abs(aligned[inner].astype(int) - crops[k][inner].astype(int)).mean() < 4
