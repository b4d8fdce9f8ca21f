"""Tests of the SynthFace generator and its writer."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from mmoaml.datagen import (APPEARANCE_TRAITS, SYNTHFACE_VERSION, TEST_ID_OFFSET, TRAIT_DIM,
                            TRAIT_NAMES, Nuisance, SynthFaceGenerator, nuisance_rng, occluded_rng,
                            write_synthface)
from mmoaml.datasets import FaceFolderDataset, OccludedFaceDataset, VerificationBinDataset
from mmoaml.fileio import load_verification_bin
from mmoaml.fileio.image import decode_image
from mmoaml.structures.face_template import ARCFACE_TEMPLATE_112
from mmoaml.utils import register_all_modules

TINY = dict(num_train_ids=3, images_per_id=2, num_test_ids=3, test_images_per_id=3,
            num_pairs=6, occluded_per_id=2, seed=5)


@pytest.fixture(scope='module')
def gen():
    return SynthFaceGenerator(seed=0)


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    register_all_modules()
    out = str(tmp_path_factory.mktemp('synthface'))
    meta = write_synthface(out, **TINY)
    return out, meta


def test_traits_are_deterministic_per_seed_and_identity(gen):
    a = gen.identity_traits(3)
    assert a.shape == (TRAIT_DIM, ) and TRAIT_DIM > len(TRAIT_NAMES)
    np.testing.assert_array_equal(a, SynthFaceGenerator(seed=0).identity_traits(3))
    assert not np.array_equal(a, gen.identity_traits(4))
    assert not np.array_equal(a, SynthFaceGenerator(seed=1).identity_traits(3))
    named = a[:len(TRAIT_NAMES)]
    assert np.all(np.abs(named) <= 2.5)


def test_render_is_deterministic(gen):
    one = gen.render_identity(2, 7)
    two = SynthFaceGenerator(seed=0).render_identity(2, 7)
    assert one.img.dtype == np.uint8 and one.img.shape == (112, 112, 3)
    assert one.img.tobytes() == two.img.tobytes()
    np.testing.assert_array_equal(one.face_mask, two.face_mask)
    assert gen.render_identity(2, 8).img.tobytes() != one.img.tobytes()
    other_seed = SynthFaceGenerator(seed=1).render_identity(2, 7)
    assert other_seed.img.tobytes() != one.img.tobytes()
    # render() with the documented rng is the same image.
    traits = gen.identity_traits(2)
    img, mask = gen.render(traits, nuisance_rng(0, 2, 7), return_mask=True)
    assert img.tobytes() == one.img.tobytes()
    np.testing.assert_array_equal(mask, one.face_mask)


def test_image_size_scales_the_frame():
    small = SynthFaceGenerator(seed=0, image_size=64).render_identity(0, 0, neutral=True)
    assert small.img.shape == (64, 64, 3) and small.face_mask.shape == (64, 64)
    np.testing.assert_allclose(
        small.landmarks, ARCFACE_TEMPLATE_112 * (64 / 112), atol=3.0 * 64 / 112)


def test_neutral_landmarks_sit_on_the_template(gen):
    for identity in range(6):
        face = gen.render_identity(identity, 0, neutral=True)
        # Alignment fits the identity's own proportions: residuals of a few pixels.
        err = np.linalg.norm(face.landmarks - ARCFACE_TEMPLATE_112, axis=1)
        assert err.max() < 3.0, (identity, err)
        assert err[:2].max() < 2.0, (identity, err)


def test_landmarks_match_the_drawn_pupils():
    """The returned eye landmarks are where the pupils are drawn (pupil colour ~ (18,18,22)).

    At 224 px so that a pupil covers enough pixels; the catch-light on the pupil's upper left
    pulls the dark pixels' centroid down-right by a fraction of a pixel.
    """
    gen = SynthFaceGenerator(seed=0, image_size=224)
    for identity in range(4):
        face = gen.render_identity(identity, 0, neutral=True)
        for x, y in face.landmarks[:2]:
            x0, y0 = int(x) - 10, int(y) - 8
            window = face.img[y0:y0 + 17, x0:x0 + 21].astype(int)
            ys, xs = np.nonzero(window.max(axis=2) < 45)
            assert len(xs) >= 5
            centre = np.array([xs.mean() + x0, ys.mean() + y0])
            assert np.linalg.norm(centre - [x, y]) < 1.0, (identity, centre, (x, y))


def test_pose_moves_landmarks_a_few_pixels(gen):
    errors = [
        np.linalg.norm(gen.render_identity(j, k).landmarks - ARCFACE_TEMPLATE_112, axis=1).max()
        for j in range(4) for k in range(4)
    ]
    assert max(errors) < 8.0
    assert np.mean(errors) > 1.0


def test_face_mask_is_the_face_without_hair(gen):
    face = gen.render_identity(0, 0, neutral=True)
    mask = face.face_mask
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    assert 0.3 < mask.mean() < 0.7
    # Nose, cheeks and mouth are face; crop corners are background; the top of the head and
    # the crown above the hairline are hair, not face.
    nose_x, nose_y = ARCFACE_TEMPLATE_112[2]
    assert mask[int(nose_y), int(nose_x)] == 1
    assert mask[int(nose_y), int(nose_x) - 25] == 1
    assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0
    assert mask[:20, 40:72].sum() == 0
    assert face.img[14:20, 50:62].mean() < 90  # dark hair there, not background


def test_lip_and_iris_traits_are_local(gen):
    """Colour traits change only their own region (no geometry, so no re-alignment)."""
    traits = gen.identity_traits(1)
    base = gen.render(traits).astype(int)
    lips = traits.copy()
    lips[TRAIT_NAMES.index('lip_redness')] += 2.0
    changed = np.abs(gen.render(lips).astype(int) - base).max(axis=2) > 0
    rows = np.nonzero(changed.any(axis=1))[0]
    assert len(rows) > 0 and rows.min() > ARCFACE_TEMPLATE_112[2, 1]  # below the nose tip
    iris = traits.copy()
    iris[TRAIT_NAMES.index('iris_hue')] += 2.0
    changed = np.abs(gen.render(iris).astype(int) - base).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    eye_y = ARCFACE_TEMPLATE_112[:2, 1].mean()
    assert len(ys) > 0 and np.abs(ys - eye_y).max() < 6


def test_same_identity_is_closer_than_different(gen):
    """Weak sanity check on the face centre: identity outweighs the nuisance on average."""
    ids, per_id = 8, 4
    faces = [gen.render_identity(j, k).img[40:100, 30:82].astype(np.float32)
             for j in range(ids) for k in range(per_id)]
    same, diff = [], []
    for a in range(len(faces)):
        for b in range(a + 1, len(faces)):
            d = np.abs(faces[a] - faces[b]).mean()
            (same if a // per_id == b // per_id else diff).append(d)
    assert np.mean(same) < np.mean(diff)


def test_appearance_traits_vary_more_between_images():
    """Per-image trait offsets: sd = trait_jitter, 1.5x for the appearance traits."""
    rng = np.random.default_rng(0)
    noise = np.array([Nuisance.draw(rng, 0.4, 112).trait_noise for _ in range(4000)])
    sd = noise.std(axis=0)
    for k, name in enumerate(TRAIT_NAMES):
        expected = 0.4 * (1.5 if name in APPEARANCE_TRAITS else 1.0)
        assert abs(sd[k] - expected) < 0.06 * expected, name
    assert 'lip_redness' in APPEARANCE_TRAITS and 'mouth_width' not in APPEARANCE_TRAITS
    assert Nuisance.neutral().trait_noise is None


def test_render_rejects_bad_traits(gen):
    with pytest.raises(ValueError, match='traits must have shape'):
        gen.render(np.zeros(5))
    with pytest.raises(ValueError, match='image_size'):
        SynthFaceGenerator(image_size=8)


def test_writer_layout_and_meta(written):
    out, meta = written
    for j in range(3):
        assert sorted(os.listdir(osp.join(out, 'train', f'{j:05d}'))) == ['0.jpg', '1.jpg']
        assert sorted(os.listdir(osp.join(out, 'occluded', 'images', f'{j:05d}'))) == [
            '0.jpg', '1.jpg']
        assert sorted(os.listdir(osp.join(out, 'occluded', 'masks', f'{j:05d}'))) == [
            '0.png', '1.png']
    with open(osp.join(out, 'meta.json')) as f:
        on_disk = json.load(f)
    assert on_disk == meta
    assert meta['seed'] == 5 and meta['generator_version'] == SYNTHFACE_VERSION
    assert meta['num_train_images'] == 6 and meta['num_occluded_images'] == 6
    assert 'make_synthface.py' in meta['command'] and '--seed 5' in meta['command']
    with open(osp.join(out, 'occluded', 'occluders.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 6 and all(r['occluder']['type'].endswith('Occlusion')
                                     for r in records)


def test_writer_pairs_are_balanced_and_disjoint(written):
    out, _ = written
    with open(osp.join(out, 'val', 'synthface_clean_pairs.txt')) as f:
        pairs = [tuple(int(v) for v in line.split()) for line in f]
    assert len(pairs) == 6 and len(set(pairs)) == 6
    for ja, ka, jb, kb, same in pairs:
        assert same == int(ja == jb)
        assert (ja, ka) != (jb, kb)
    # Every consecutive slot pair holds one same and one different pair.
    assert all(pairs[i][4] + pairs[i + 1][4] == 1 for i in range(0, 6, 2))
    images, issame = load_verification_bin(osp.join(out, 'val', 'synthface_clean.bin'))
    assert len(images) == 12
    np.testing.assert_array_equal(issame, [p[4] == 1 for p in pairs])
    # Test images are the test identities' renders (ids from TEST_ID_OFFSET), JPEG-encoded.
    ja, ka = pairs[0][:2]
    decoded = decode_image(images[0], 'pair0').astype(int)
    expected = SynthFaceGenerator(seed=5).render_identity(TEST_ID_OFFSET + ja, ka).img
    assert np.abs(decoded - expected).mean() < 3


def test_holdout_pairs_use_training_range_identities_not_in_train(tmp_path):
    out = str(tmp_path)
    meta = write_synthface(out, **dict(TINY, occluded_per_id=0, num_holdout_ids=2,
                                       num_holdout_pairs=4))
    assert (meta['num_holdout_ids'], meta['num_holdout_pairs']) == (2, 4)
    assert '--num-holdout-ids 2' in meta['command']
    with open(osp.join(out, 'val', 'synthface_holdout_pairs.txt')) as f:
        pairs = [tuple(int(v) for v in line.split()) for line in f]
    assert len(pairs) == 4 and all(same == int(ja == jb) for ja, _, jb, _, same in pairs)
    assert {p[0] for p in pairs} | {p[2] for p in pairs} <= {0, 1}
    # Held-out ids follow the training ids (3, 4 here) and have no training folder.
    assert sorted(os.listdir(osp.join(out, 'train'))) == ['00000', '00001', '00002']
    images, issame = load_verification_bin(osp.join(out, 'val', 'synthface_holdout.bin'))
    np.testing.assert_array_equal(issame, [p[4] == 1 for p in pairs])
    ja, ka, jb, kb, _ = pairs[-1]
    gen = SynthFaceGenerator(seed=5)
    for img, (j, k) in zip(images[-2:], ((ja, ka), (jb, kb))):
        decoded = decode_image(img, 'holdout').astype(int)
        error = np.abs(decoded - gen.render_identity(TINY['num_train_ids'] + j, k).img).mean()
        # JPEG error only; the same image index of a training identity is far off.
        assert error < 5 < np.abs(decoded - gen.render_identity(j, k).img).mean()
    # The test pairs are those of a run without a held-out set.
    plain = str(tmp_path / 'plain')
    write_synthface(plain, **dict(TINY, occluded_per_id=0))
    for name in ('synthface_clean.bin', 'synthface_clean_pairs.txt'):
        with open(osp.join(out, 'val', name), 'rb') as f, \
                open(osp.join(plain, 'val', name), 'rb') as g:
            assert f.read() == g.read()
    with pytest.raises(ValueError, match='num_holdout_ids'):
        write_synthface(str(tmp_path / 'bad'), **dict(TINY, num_holdout_ids=1))


def test_written_sets_load_with_the_project_loaders(written):
    out, _ = written
    train = FaceFolderDataset(data_root=osp.join(out, 'train'))
    assert len(train) == 6 and train.metainfo['classes'] == ('00000', '00001', '00002')
    sample = train[3]
    expected = SynthFaceGenerator(seed=5).render_identity(1, 1).img
    assert sample['gt_label'] == 1 and np.abs(sample['img'].astype(int) - expected).mean() < 3

    val = VerificationBinDataset(data_root=osp.join(out, 'val'), ann_file='synthface_clean.bin')
    assert len(val) == 12 and val[0]['img'].shape == (112, 112, 3)
    assert 'visibility_mask' not in val[0]  # like a real clean .bin: no masks

    occ = OccludedFaceDataset(data_root=osp.join(out, 'occluded'))
    assert len(occ) == 6
    for i in range(6):
        item = occ[i]
        vis = item['visibility_mask']
        assert vis.shape == (112, 112) and set(np.unique(vis)) <= {0.0, 1.0}
        # Background corners are never visible face; an occluder removed part of the face.
        assert vis[0, 0] == vis[-1, -1] == 0
        assert 0 < vis.mean() < 0.5


def test_occluded_masks_start_from_the_true_face_mask(written):
    """Visible = the rendered face's mask minus the occluder (hair and background excluded)."""
    out, _ = written
    gen = SynthFaceGenerator(seed=5)
    occ = OccludedFaceDataset(data_root=osp.join(out, 'occluded'))
    for i in range(6):
        identity, k = divmod(i, 2)
        face = gen.render_face(gen.identity_traits(identity), occluded_rng(5, identity, k))
        vis = occ[i]['visibility_mask']
        assert (vis <= face.face_mask).all()
        assert 0 < vis.sum() < face.face_mask.sum()
        # Where the face stays visible the image is the clean render (up to JPEG); the
        # covered face pixels show the occluder.
        diff = np.abs(occ[i]['img'].astype(int) - face.img.astype(int)).mean(axis=2)
        covered = (face.face_mask > 0) & (vis == 0)
        assert diff[vis > 0].mean() < 6
        assert diff[covered].mean() > 4 * diff[vis > 0].mean()


def test_writer_is_reproducible_across_workers(tmp_path, written):
    out, _ = written
    again = str(tmp_path / 'again')
    write_synthface(again, num_workers=2, **TINY)
    for root, _, files in os.walk(out):
        for name in files:
            rel = osp.relpath(osp.join(root, name), out)
            with open(osp.join(out, rel), 'rb') as a, open(osp.join(again, rel), 'rb') as b:
                if rel == 'meta.json':  # equal but for the output folder in the command
                    meta_a, meta_b = json.load(a), json.load(b)
                    assert meta_a.pop('command').replace(out, again) == meta_b.pop('command')
                    assert meta_a == meta_b
                else:
                    assert a.read() == b.read(), rel


def test_writer_rejects_bad_arguments(tmp_path):
    register_all_modules()
    with pytest.raises(ValueError, match='even'):
        write_synthface(str(tmp_path), **dict(TINY, num_pairs=5))
    with pytest.raises(ValueError, match='distinct same'):
        write_synthface(str(tmp_path), **dict(TINY, num_pairs=40))
    with pytest.raises(ValueError, match='not registered'):
        write_synthface(str(tmp_path), occluders=[('NoSuchOcclusion', 1.0)],
                        **dict(TINY, seed=1))
    assert not osp.exists(osp.join(str(tmp_path), 'train'))
