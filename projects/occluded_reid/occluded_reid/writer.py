"""Write a SynthPerson data set to disk (images, visibility masks, list files).

Layout under ``out_dir``::

    images/<split>/<id>/<name>.jpg   128 x 64 BGR pedestrians (JPEG)
    masks/<split>/<id>/<name>.png    visibility: 255 = visible person pixel, 0 = background
                                     or occluder (mmoaml's mask convention)
    train.txt                        training identities, clean images
    test.txt                         other identities: clean gallery images, and every query
                                     image twice, clean and with a drawn occluder
    meta.json                        the arguments and counts

Every line of a list file reads ``<image> <mask> <label> <role> <occluded>`` (paths relative to
``out_dir``; ``role`` is ``train``, ``gallery`` or ``query``; ``occluded`` 0 or 1). Training
labels are ``0 .. num_train_ids - 1``; test labels continue after them (disjoint people).
Training images are stored clean: the training pipeline draws occluders on the fly.
"""
import json
import os
import os.path as osp
from typing import Callable, List, Optional

import cv2
import numpy as np

from .generator import OCCLUDER_KINDS, make_person

__all__ = ['write_synthperson']


def _save(out_dir: str, rel_img: str, img: np.ndarray, vis: np.ndarray, quality: int) -> str:
    rel_mask = 'masks' + rel_img[len('images'):-len('.jpg')] + '.png'
    for rel in (rel_img, rel_mask):
        os.makedirs(osp.dirname(osp.join(out_dir, rel)), exist_ok=True)
    if not cv2.imwrite(osp.join(out_dir, rel_img), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f'cannot write {rel_img}')
    mask = np.round(np.clip(vis, 0, 1) * 255).astype(np.uint8)
    if not cv2.imwrite(osp.join(out_dir, rel_mask), mask):
        raise OSError(f'cannot write {rel_mask}')
    return rel_mask


def write_synthperson(out_dir: str,
                      num_train_ids: int = 60,
                      images_per_id: int = 12,
                      num_test_ids: int = 50,
                      gallery_per_id: int = 2,
                      query_per_id: int = 2,
                      seed: int = 0,
                      jpeg_quality: int = 90,
                      progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Render and write the data set (layout: module docstring).

    Args:
        out_dir (str): output folder (created; existing files are overwritten).
        num_train_ids (int): training identities. Defaults to 60.
        images_per_id (int): images per training identity. Defaults to 12.
        num_test_ids (int): test identities (disjoint from training). Defaults to 50.
        gallery_per_id (int): clean gallery images per test identity. Defaults to 2.
        query_per_id (int): query images per test identity, each written clean and occluded.
            Defaults to 2.
        seed (int): the data set's seed. Defaults to 0.
        jpeg_quality (int): JPEG quality. Defaults to 90.
        progress (Callable[[int, int], None], optional): called with (done, total) identities.

    Returns:
        dict: the contents of ``meta.json``.
    """
    if min(num_train_ids, images_per_id, num_test_ids, gallery_per_id, query_per_id) < 1:
        raise ValueError('every count must be >= 1')
    total = num_train_ids + num_test_ids
    train: List[str] = []
    test: List[str] = []
    occluded_kinds = {}
    for label in range(total):
        is_test = label >= num_train_ids
        split = 'test' if is_test else 'train'
        count = gallery_per_id + query_per_id if is_test else images_per_id
        for k in range(count):
            img, vis, _ = make_person(seed, label, k)
            rel = f'images/{split}/{label:04d}/{k:02d}.jpg'
            mask = _save(out_dir, rel, img, vis, jpeg_quality)
            if not is_test:
                train.append(f'{rel} {mask} {label} train 0')
                continue
            role = 'gallery' if k < gallery_per_id else 'query'
            test.append(f'{rel} {mask} {label} {role} 0')
            if role == 'query':
                img, vis, record = make_person(seed, label, k, occlude=OCCLUDER_KINDS)
                rel = f'images/{split}/{label:04d}/{k:02d}_occ.jpg'
                mask = _save(out_dir, rel, img, vis, jpeg_quality)
                test.append(f'{rel} {mask} {label} query 1')
                occluded_kinds[record['kind']] = occluded_kinds.get(record['kind'], 0) + 1
        if progress is not None:
            progress(label + 1, total)
    for name, lines in (('train.txt', train), ('test.txt', test)):
        with open(osp.join(out_dir, name), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    meta = dict(seed=seed, num_train_ids=num_train_ids, images_per_id=images_per_id,
                num_test_ids=num_test_ids, gallery_per_id=gallery_per_id,
                query_per_id=query_per_id, num_train_images=len(train),
                num_test_images=len(test), occluded_query_kinds=occluded_kinds)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return meta
