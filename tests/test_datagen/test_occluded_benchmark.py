"""Occluded benchmark generator on a tiny synthetic .bin: pair order, probe-only changes,
masks against changed pixels, held-out styles, determinism and exact regeneration."""
import json
import os.path as osp

import numpy as np
import pytest

from mmoaml.datagen import (PROTOCOLS, grid_masks_path_for, load_grid_masks, make_occluded_variants,
                            regenerate_from_log)
from mmoaml.datasets import VerificationBinDataset
from mmoaml.datasets.transforms import (MedicalMaskOcclusion, NiqabOcclusion, RandomOcclusion,
                                        SunglassesOcclusion)
from mmoaml.fileio import (decode_image, dump_verification_bin, encode_image, load_verification_bin,
                           load_visibility_masks, masks_path_for, save_visibility_masks)
from mmoaml.structures import face_region_prior

ISSAME = [True, False, True, False]
OCCLUDERS = {
    c.__name__: c
    for c in (MedicalMaskOcclusion, NiqabOcclusion, SunglassesOcclusion, RandomOcclusion)
}


@pytest.fixture
def source(tmp_path):
    """4 pairs of random 112x112 images (noise: a covered pixel virtually always changes)."""
    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), '.png')
              for _ in range(8)]
    path = str(tmp_path / 'toy.bin')
    dump_verification_bin(path, images, ISSAME)
    return path


def _decoded(path):
    images, issame = load_verification_bin(path)
    return [decode_image(b, f'{path}#{i}') for i, b in enumerate(images)], issame


def _read_log(path):
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    return lines[0], lines[1:]


def test_pair_order_kept_and_only_probes_change(source, tmp_path):
    out = make_occluded_variants(source, str(tmp_path / 'out'))
    assert set(out) == set(PROTOCOLS)
    clean_bytes, _ = load_verification_bin(out['clean'].bin)
    prior = np.round(face_region_prior((112, 112)) * 255).astype(np.uint8)
    for name, files in out.items():
        data, issame = load_verification_bin(files.bin)
        assert issame.tolist() == ISSAME and len(data) == 8
        header, lines = _read_log(files.log)
        assert header['protocol'] == name and header['source'] == 'toy.bin'
        assert [line['index'] for line in lines] == list(range(8))
        masks = load_visibility_masks(files.masks)
        protocol = PROTOCOLS[name]
        for i, line in enumerate(lines):
            occluded = protocol.occludes(i)
            assert line['occluded'] == occluded
            if occluded:
                assert data[i] != clean_bytes[i]
                record = line['occluder']
                assert record['type'] == protocol.occluder
                # held-out styles only: never drawn by a training pipeline
                assert record['style'] in OCCLUDERS[protocol.occluder].HOLDOUT_STYLES
                assert set(record) == {'type', 'style', 'colour', 'accent', 'params'}
                assert (masks[i] <= prior).all() and (masks[i] < prior).any()
            else:
                # the clean side: the same bytes in every protocol, visibility = face prior
                assert data[i] == clean_bytes[i] and line['occluder'] is None
                np.testing.assert_array_equal(masks[i], prior)
    assert PROTOCOLS['mask_probe'].sides == 'probe' and PROTOCOLS['mask_both'].sides == 'both'
    # both sides of mask_both are drawn independently; its probes are mask_probe's probes
    both = _read_log(out['mask_both'].log)[1]
    probe = _read_log(out['mask_probe'].log)[1]
    assert [both[i]['occluder'] for i in (1, 3, 5, 7)] == [
        probe[i]['occluder'] for i in (1, 3, 5, 7)
    ]
    assert both[0]['occluder'] != both[1]['occluder']


def test_every_image_reencoded_with_one_codec(source, tmp_path):
    out = make_occluded_variants(source, str(tmp_path / 'out'), protocols=['clean'], quality=90)
    original, _ = load_verification_bin(source)
    data, _ = load_verification_bin(out['clean'].bin)
    for i in range(8):
        assert data[i][:2] == b'\xff\xd8'  # JPEG, although the source holds PNGs
        assert data[i] == encode_image(decode_image(original[i], 'src'), '.jpg', 90)


def test_masks_are_the_changed_pixels_and_grid_is_their_area_average(source, tmp_path):
    # A source mask file of all-visible pixels replaces the prior, so a mask value of 0 means
    # "covered by the occluder"; PNG keeps the written pixels exact.
    save_visibility_masks(masks_path_for(source), np.full((8, 112, 112), 255, np.uint8))
    out = make_occluded_variants(source, str(tmp_path / 'out'), ext='.png',
                                 grid_sizes=((7, 7), (14, 14)))
    clean, _ = _decoded(out['clean'].bin)
    for name, files in out.items():
        images, _ = _decoded(files.bin)
        masks = load_visibility_masks(files.masks)
        header, lines = _read_log(files.log)
        assert header['source_masks'] == 'toy_masks.npz'
        for i in range(8):
            changed = (images[i] != clean[i]).any(axis=2)
            hidden = masks[i] == 0
            assert not (changed & ~hidden).any(), (name, i)  # nothing changes outside
            if PROTOCOLS[name].occludes(i):
                assert hidden.any() and changed[hidden].mean() > 0.99
            else:
                assert not hidden.any()
            assert lines[i]['visible_fraction'] == pytest.approx(masks[i].mean() / 255, abs=1e-6)
        for (h, w), path in files.grids.items():
            assert path == grid_masks_path_for(files.bin, (h, w))
            grid = load_grid_masks(path)
            step = 112 // h
            expected = (masks.astype(np.float64) / 255).reshape(8, h, step, w, step).mean((2, 4))
            assert grid.shape == (8, 1, h, w)
            np.testing.assert_allclose(grid[:, 0], expected, atol=1e-6)


def test_dataset_picks_up_the_masks(source, tmp_path):
    out = make_occluded_variants(source, str(tmp_path / 'out'), protocols=['niqab_probe'])
    files = out['niqab_probe']
    dataset = VerificationBinDataset(data_root=osp.dirname(files.bin),
                                     ann_file=osp.basename(files.bin), pipeline=[])
    masks = load_visibility_masks(files.masks)
    item = dataset[3]
    assert item['issame'] == ISSAME[1] and item['pair_idx'] == 1
    np.testing.assert_array_equal(item['visibility_mask'], masks[3] / 255.0)


def test_seeded_deterministic(source, tmp_path):
    kwargs = dict(protocols=['random_probe', 'sunglasses_probe'])
    a = make_occluded_variants(source, str(tmp_path / 'a'), seed=3, **kwargs)
    b = make_occluded_variants(source, str(tmp_path / 'b'), seed=3, **kwargs)
    c = make_occluded_variants(source, str(tmp_path / 'c'), seed=4, **kwargs)
    for name in a:
        for x, y in zip([a[name].bin, a[name].masks, a[name].log, *a[name].grids.values()],
                        [b[name].bin, b[name].masks, b[name].log, *b[name].grids.values()]):
            assert open(x, 'rb').read() == open(y, 'rb').read()
        assert load_verification_bin(a[name].bin)[0][1] != load_verification_bin(c[name].bin)[0][1]


def test_regeneration_from_the_log_is_exact(source, tmp_path):
    out = make_occluded_variants(source, str(tmp_path / 'out'), seed=7,
                                 protocols=['mask_both', 'random_probe'],
                                 occluder_options={'RandomOcclusion': dict(side_range=(0.3, 0.4))})
    for files in out.values():
        again = regenerate_from_log(files.log, source, str(tmp_path / 'again'))
        assert osp.basename(again.bin) == osp.basename(files.bin)
        for x, y in zip([files.bin, files.masks, files.log, *files.grids.values()],
                        [again.bin, again.masks, again.log, *again.grids.values()]):
            assert open(x, 'rb').read() == open(y, 'rb').read()
    # a log whose settings do not produce its recorded images is caught, image by image
    log = out['random_probe'].log
    with open(log) as f:
        lines = f.read().splitlines()
    header = json.loads(lines[0])
    header['occluder_cfg']['side_range'] = [0.2, 0.5]
    tampered = str(tmp_path / 'tampered_log.jsonl')
    with open(tampered, 'w') as f:
        f.write('\n'.join([json.dumps(header)] + lines[1:]) + '\n')
    with pytest.raises(ValueError, match='image 1 regenerated differently'):
        regenerate_from_log(tampered, source, str(tmp_path / 'bad'))
    other = str(tmp_path / 'other.bin')
    images, issame = load_verification_bin(source)
    dump_verification_bin(other, images[::-1], issame)
    with pytest.raises(ValueError, match='SHA-256 differs'):
        regenerate_from_log(log, other, str(tmp_path / 'bad'))


def test_bad_arguments_are_named(source, tmp_path):
    with pytest.raises(ValueError, match='protocols'):
        make_occluded_variants(source, str(tmp_path), protocols=['mask_left'])
    with pytest.raises(ValueError, match=r"may not set \['styles'\]"):
        make_occluded_variants(source, str(tmp_path), protocols=['mask_probe'],
                               occluder_options={'MedicalMaskOcclusion': dict(styles='all')})
    with pytest.raises(ValueError, match='no chosen protocol uses'):
        make_occluded_variants(source, str(tmp_path), protocols=['clean'],
                               occluder_options={'NiqabOcclusion': {}})
    save_visibility_masks(masks_path_for(source), np.full((6, 112, 112), 255, np.uint8))
    with pytest.raises(ValueError, match='6 masks for the 8 images'):
        make_occluded_variants(source, str(tmp_path), protocols=['clean'])
