"""The SynthFace writer: a data set on disk, in the formats of real face data.

Layout under ``out_dir``::

    train/<id>/<k>.jpg                 training faces (FaceFolderDataset)
    val/synthface_clean.bin            verification pairs over disjoint test identities
                                       (VerificationBinDataset); pair k = images 2k, 2k+1
    val/synthface_clean_pairs.txt      per pair: id_a k_a id_b k_b issame
    val/synthface_holdout.bin          (with ``num_holdout_ids``) pairs over held-out identities
                                       of the training id range, ``num_train_ids`` onwards, that
                                       train/ does not hold: a validation split for choices
                                       (fusion weights, thresholds) that must not see test pairs
    val/synthface_holdout_pairs.txt    its pairs, ids counted from ``num_train_ids``
    occluded/images/<id>/<k>.jpg       occluded training-identity faces (OccludedFaceDataset)
    occluded/masks/<id>/<k>.png        their masks: 255 = visible face, 0 = occluder or not
                                       face (hair, neck, background)
    occluded/occluders.jsonl           per occluded image: identity, image, occluder record
    meta.json                          seed, counts, version, regeneration command

``<id>`` is the zero-padded identity id, so folder order is id order and the occluded set's
labels (its first ``num_occluded_ids`` identities) equal the training labels. Test identities
are ``TEST_ID_OFFSET + j``; the pairs file lists them 0-based (``j``). Held-out identities are
``num_train_ids + j``, rendered like test identities (``test_images_per_id`` images each).
Occluded images are new draws (their own nuisance stream, :func:`~.traits.occluded_rng`),
each starting from the rendered face's true mask, with one occluder from ``occluders`` built
by name from the transform registry with ``seed`` (training styles only; held-out styles stay
for test benchmarks).

Work is split into tasks (one per identity, or per test image) that run in worker processes;
every task is a function of its arguments, so the files do not depend on the number of workers.
"""
import json
import os
import os.path as osp
import shlex
from functools import lru_cache
from multiprocessing import get_context
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mmoaml.fileio.image import encode_image
from mmoaml.fileio.verification_bin import dump_verification_bin
from mmoaml.registry import TRANSFORMS
from .generator import SYNTHFACE_VERSION, SynthFaceGenerator, cached_generator
from .traits import DEFAULT_TRAIT_JITTER, TEST_ID_OFFSET, holdout_pairs_rng, occluded_rng, pairs_rng

__all__ = ['DEFAULT_OCCLUDERS', 'write_synthface']

#: Default occluder mix of the occluded set: registered transform name -> probability.
DEFAULT_OCCLUDERS = (('NiqabOcclusion', 0.4), ('MedicalMaskOcclusion', 0.3),
                     ('SunglassesOcclusion', 0.15), ('RandomOcclusion', 0.15))

#: A verification pair: ``(id_a, k_a, id_b, k_b, issame)`` with 0-based test ids.
Pair = Tuple[int, int, int, int, bool]


def _id_name(identity_id: int, width: int) -> str:
    return f'{identity_id:0{width}d}'


def _write(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def _write_train_identity(task: tuple) -> int:
    """Render and write ``train/<id>/<k>.jpg`` for one identity; returns the image count."""
    out_dir, identity, count, width, seed, size, jitter, quality = task
    gen = cached_generator(seed, size, jitter)
    folder = osp.join(out_dir, 'train', _id_name(identity, width))
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        img = gen.render_identity(identity, k).img
        _write(osp.join(folder, f'{k}.jpg'), encode_image(img, '.jpg', quality))
    return count


@lru_cache(maxsize=4)
def _cached_occluders(names: Tuple[str, ...], seed: int) -> tuple:
    # prob=1: every image of the occluded set carries its occluder (some occluders default to
    # an augmentation probability below 1).
    return tuple(TRANSFORMS.build(dict(type=name, seed=seed, prob=1.0)) for name in names)


def _write_occluded_identity(task: tuple) -> List[dict]:
    """Render, occlude and write ``occluded/{images,masks}/<id>/<k>`` for one identity.

    Each image starts from its true face mask; one occluder, drawn from the mix, is applied
    (the occluders' own per-sample seeding makes it reproducible). Returns one record per image.
    """
    (out_dir, identity, count, width, seed, size, jitter, quality, names, probs) = task
    gen = cached_generator(seed, size, jitter)
    occluders = _cached_occluders(names, seed)
    name = _id_name(identity, width)
    img_dir = osp.join(out_dir, 'occluded', 'images', name)
    mask_dir = osp.join(out_dir, 'occluded', 'masks', name)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    traits = gen.identity_traits(identity)
    records = []
    for k in range(count):
        rng = occluded_rng(seed, identity, k)
        face = gen.render_face(traits, rng)
        choice = int(rng.choice(len(names), p=probs))
        results = dict(img=face.img, visibility_mask=face.face_mask,
                       sample_idx=identity * count + k,
                       img_path=osp.join(img_dir, f'{k}.jpg'))
        results = occluders[choice](results)
        mask = (np.asarray(results['visibility_mask']) >= 0.5).astype(np.uint8) * 255
        _write(osp.join(img_dir, f'{k}.jpg'), encode_image(results['img'], '.jpg', quality))
        _write(osp.join(mask_dir, f'{k}.png'), encode_image(mask, '.png'))
        records.append(dict(identity=identity, image=k, occluder=results['occluder']))
    return records


def _render_test_image(task: tuple) -> Tuple[Tuple[int, int], bytes]:
    """Render one test image; returns ``((identity, k), JPEG bytes)``."""
    identity, k, seed, size, jitter, quality = task
    img = cached_generator(seed, size, jitter).render_identity(identity, k).img
    return (identity, k), encode_image(img, '.jpg', quality)


def _pair_list(num_pairs: int, num_test_ids: int, images_per_id: int,
               rng: np.random.Generator) -> List[Pair]:
    """``num_pairs`` distinct pairs ``(id_a, k_a, id_b, k_b, issame)``, ids 0-based.

    Half same-identity (two different images), half different-identity; listed as alternating
    same/different slots in a random order per slot pair, so every contiguous fold of an even
    number of pairs is balanced.
    """
    if num_pairs % 2:
        raise ValueError(f'write_synthface: num_pairs must be even (half same, half different), '
                         f'got {num_pairs}')
    half = num_pairs // 2
    max_same = num_test_ids * images_per_id * (images_per_id - 1) // 2
    max_diff = (num_test_ids * (num_test_ids - 1) // 2) * images_per_id**2
    if half > max_same or half > max_diff:
        raise ValueError(f'write_synthface: {num_pairs} pairs need {half} distinct same and '
                         f'different pairs; {num_test_ids} test identities x {images_per_id} '
                         f'images allow {max_same} same and {max_diff} different pairs')
    same, diff = set(), set()
    while len(same) < half:
        j = int(rng.integers(num_test_ids))
        a, b = sorted(int(v) for v in rng.choice(images_per_id, 2, replace=False))
        same.add((j, a, j, b))
    while len(diff) < half:
        i, j = sorted(int(v) for v in rng.choice(num_test_ids, 2, replace=False))
        diff.add((i, int(rng.integers(images_per_id)), j, int(rng.integers(images_per_id))))
    same_l, diff_l = sorted(same), sorted(diff)
    rng.shuffle(same_l)
    rng.shuffle(diff_l)
    pairs = []
    for s_pair, d_pair, flip in zip(same_l, diff_l, rng.random(half) < 0.5):
        slot = [s_pair + (True, ), d_pair + (False, )]
        pairs.extend(slot[::-1] if flip else slot)
    return pairs


def _holdout_pairs(num_ids: int, num_pairs: int, images_per_id: int, seed: int) -> List[Pair]:
    """The held-out pairs (ids 0-based from ``num_train_ids``); none when ``num_ids`` is 0."""
    if num_ids < 0 or num_ids == 1:
        raise ValueError(f'write_synthface: num_holdout_ids must be 0 or >= 2, got {num_ids}')
    if not num_ids:
        return []
    return _pair_list(num_pairs, num_ids, images_per_id, holdout_pairs_rng(seed))


class _Job(NamedTuple):
    """The checked arguments of one :func:`write_synthface` call (see there)."""
    out_dir: str
    num_train_ids: int
    images_per_id: int
    num_test_ids: int
    test_images_per_id: int
    num_pairs: int
    num_occluded_ids: int
    occluded_per_id: int
    occluders: Tuple[Tuple[str, float], ...]
    seed: int
    image_size: int
    trait_jitter: float
    jpeg_quality: int
    num_holdout_ids: int
    num_holdout_pairs: int


def _check_counts(num_train_ids: int, images_per_id: int, num_test_ids: int,
                  test_images_per_id: int, num_occluded_ids: Optional[int]) -> int:
    """Check the set sizes; returns ``num_occluded_ids`` with None resolved to all."""
    if num_train_ids < 1 or images_per_id < 1 or num_test_ids < 2 or test_images_per_id < 2:
        raise ValueError('write_synthface: need num_train_ids >= 1, images_per_id >= 1, '
                         'num_test_ids >= 2 and test_images_per_id >= 2; got '
                         f'{num_train_ids}, {images_per_id}, {num_test_ids}, '
                         f'{test_images_per_id}')
    num_occluded_ids = num_train_ids if num_occluded_ids is None else int(num_occluded_ids)
    if not 0 <= num_occluded_ids <= num_train_ids:
        raise ValueError(f'write_synthface: num_occluded_ids must be in [0, {num_train_ids}], '
                         f'got {num_occluded_ids}')
    return num_occluded_ids


def _check_occluders(occluders: Sequence[Tuple[str, float]],
                     occluded_per_id: int) -> Tuple[Tuple[str, ...], Tuple[float, ...]]:
    """The occluder mix as ``(names, probabilities)``; empty probabilities without a set."""
    names = tuple(str(n) for n, _ in occluders)
    weights = np.array([float(w) for _, w in occluders])
    if not occluded_per_id:
        return names, ()
    if not names or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f'write_synthface: occluders must be (name, weight >= 0) pairs with a '
                         f'positive total, got {list(occluders)}')
    unknown = [n for n in names if TRANSFORMS.get(n) is None]
    if unknown:
        raise ValueError(f'write_synthface: occluder transform(s) {unknown} are not registered')
    return names, tuple((weights / weights.sum()).tolist())


def _tasks(job: _Job, names: Tuple[str, ...], probs: Tuple[float, ...],
           pairs: List[Pair], holdout_pairs: List[Pair]) -> Tuple[list, list, list]:
    """The worker tasks ``(train, test, occluded)`` of a job; "test" renders the images of the
    test pairs and of the held-out pairs."""
    width = max(5, len(str(job.num_train_ids - 1)))
    common = (job.seed, job.image_size, job.trait_jitter, job.jpeg_quality)
    train = [(job.out_dir, j, job.images_per_id, width) + common
             for j in range(job.num_train_ids)]
    occluded = [(job.out_dir, j, job.occluded_per_id, width) + common + (names, probs)
                for j in range(job.num_occluded_ids if job.occluded_per_id else 0)]
    needed = sorted({(offset + p[i], p[i + 1])
                     for offset, listed in ((TEST_ID_OFFSET, pairs),
                                            (job.num_train_ids, holdout_pairs))
                     for p in listed for i in (0, 2)})
    return train, [key + common for key in needed], occluded


def _run_tasks(tasks: Tuple[list, list, list], num_workers: int,
               progress: Optional[Callable[[int, int], None]]
               ) -> Tuple[Dict[Tuple[int, int], bytes], List[dict]]:
    """Run the tasks of :func:`_tasks`; returns the encoded test images and occluder records."""
    train, test, occluded = tasks
    total = sum(t[2] for t in train) + len(test) + sum(t[2] for t in occluded)

    def report(count: int) -> None:
        if progress is not None:
            progress(count, total)

    encoded, records = {}, []
    pool = get_context().Pool(num_workers) if num_workers > 0 else None
    mapper = pool.imap if pool is not None else map
    try:
        for done in mapper(_write_train_identity, train):
            report(done)
        for key, data in mapper(_render_test_image, test):
            encoded[key] = data
            report(1)
        for recs in mapper(_write_occluded_identity, occluded):
            records.extend(recs)
            report(len(recs))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return encoded, records


def _write_pairs(stem: str, pairs: List[Pair], offset: int,
                 encoded: Dict[Tuple[int, int], bytes]) -> None:
    """Write ``<stem>.bin`` and ``<stem>_pairs.txt`` for pairs of ids ``offset + j``."""
    images, issame, lines = [], [], []
    for ja, ka, jb, kb, same in pairs:
        images += [encoded[(offset + ja, ka)], encoded[(offset + jb, kb)]]
        issame.append(same)
        lines.append(f'{ja} {ka} {jb} {kb} {int(same)}\n')
    dump_verification_bin(stem + '.bin', images, issame)
    with open(stem + '_pairs.txt', 'w') as f:
        f.writelines(lines)


def _write_annotations(job: _Job, pairs: List[Pair], holdout_pairs: List[Pair],
                       encoded: Dict[Tuple[int, int], bytes], records: List[dict]) -> None:
    """Write the verification ``.bin`` files, their pairs files and the occluder records."""
    out_dir = job.out_dir
    _write_pairs(osp.join(out_dir, 'val', 'synthface_clean'), pairs, TEST_ID_OFFSET, encoded)
    if holdout_pairs:
        _write_pairs(osp.join(out_dir, 'val', 'synthface_holdout'), holdout_pairs,
                     job.num_train_ids, encoded)
    if records:
        with open(osp.join(out_dir, 'occluded', 'occluders.jsonl'), 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)


def _command(job: _Job) -> str:
    """The ``tools/dataset_converters/make_synthface.py`` call that writes ``job``."""
    return ' '.join([
        'python tools/dataset_converters/make_synthface.py', shlex.quote(str(job.out_dir)),
        f'--num-train-ids {job.num_train_ids}', f'--images-per-id {job.images_per_id}',
        f'--num-test-ids {job.num_test_ids}', f'--test-images-per-id {job.test_images_per_id}',
        f'--num-pairs {job.num_pairs}', f'--num-occluded-ids {job.num_occluded_ids}',
        f'--occluded-per-id {job.occluded_per_id}', '--occluders ' + ' '.join(
            f'{n}={w:g}' for n, w in job.occluders), f'--image-size {job.image_size}',
        f'--trait-jitter {job.trait_jitter:g}', f'--jpeg-quality {job.jpeg_quality}',
        f'--seed {job.seed}'
    ] + ([f'--num-holdout-ids {job.num_holdout_ids}',
          f'--num-holdout-pairs {job.num_holdout_pairs}'] if job.num_holdout_ids else []))


def _meta(job: _Job, num_occluded_images: int, command: str) -> dict:
    """The contents of ``meta.json``."""
    return dict(
        generator='SynthFace',
        generator_version=SYNTHFACE_VERSION,
        seed=job.seed,
        image_size=job.image_size,
        trait_jitter=job.trait_jitter,
        jpeg_quality=job.jpeg_quality,
        num_train_ids=job.num_train_ids,
        images_per_id=job.images_per_id,
        num_train_images=job.num_train_ids * job.images_per_id,
        num_test_ids=job.num_test_ids,
        test_id_offset=TEST_ID_OFFSET,
        test_images_per_id=job.test_images_per_id,
        num_pairs=job.num_pairs,
        num_holdout_ids=job.num_holdout_ids,
        num_holdout_pairs=job.num_holdout_pairs if job.num_holdout_ids else 0,
        num_occluded_ids=job.num_occluded_ids if job.occluded_per_id else 0,
        occluded_per_id=job.occluded_per_id,
        num_occluded_images=num_occluded_images,
        occluders=[[n, float(w)] for n, w in job.occluders],
        occluder_styles='train',
        mask_convention='255 = visible face; 0 = occluder or not face (hair, neck, background)',
        command=command)


def write_synthface(out_dir: str, num_train_ids: int = 1000, images_per_id: int = 20,
                    num_test_ids: int = 200, num_pairs: int = 3000, seed: int = 0,
                    test_images_per_id: int = 10, num_occluded_ids: Optional[int] = None,
                    occluded_per_id: int = 4,
                    occluders: Sequence[Tuple[str, float]] = DEFAULT_OCCLUDERS,
                    image_size: int = 112, trait_jitter: float = DEFAULT_TRAIT_JITTER,
                    jpeg_quality: int = 95, num_holdout_ids: int = 0,
                    num_holdout_pairs: int = 1000, num_workers: int = 0,
                    progress: Optional[Callable[[int, int], None]] = None,
                    command: Optional[str] = None) -> dict:
    """Write a SynthFace data set in the formats of real face data (layout: module docstring).

    Args:
        out_dir (str): output folder (created; existing files are overwritten).
        num_train_ids (int): training identities. Defaults to 1000.
        images_per_id (int): images per training identity. Defaults to 20.
        num_test_ids (int): verification identities. Defaults to 200.
        num_pairs (int): verification pairs (even). Defaults to 3000.
        seed (int): the data set's seed. Defaults to 0.
        test_images_per_id (int): images rendered per test identity. Defaults to 10.
        num_occluded_ids (int, optional): training identities in the occluded set (the first
            ones); None = all. Defaults to None.
        occluded_per_id (int): occluded images per identity; 0 = no occluded set. Defaults to 4.
        occluders (Sequence[tuple[str, float]]): ``(transform name, weight)``; weights are
            normalised. Defaults to :data:`DEFAULT_OCCLUDERS`.
        image_size (int): image size. Defaults to 112.
        trait_jitter (float): see :class:`SynthFaceGenerator`. Defaults to 0.6.
        jpeg_quality (int): quality of the written JPEGs. Defaults to 95 (AdaFace's
            ``convert.py``).
        num_holdout_ids (int): held-out identities of the training id range (ids
            ``num_train_ids`` onwards, ``test_images_per_id`` images each) for
            ``val/synthface_holdout.bin``; 0 = none. Defaults to 0.
        num_holdout_pairs (int): pairs of the held-out set (even). Defaults to 1000.
        num_workers (int): worker processes; 0 = render in this process. Defaults to 0.
        progress (Callable[[int, int], None], optional): called after each unit of work with
            the number of images it finished and the total number of images to render.
        command (str, optional): the command line to record in ``meta.json``; None = the
            equivalent ``tools/dataset_converters/make_synthface.py`` call.

    Returns:
        dict: the contents of ``meta.json``.
    """
    num_occluded_ids = _check_counts(num_train_ids, images_per_id, num_test_ids,
                                     test_images_per_id, num_occluded_ids)
    names, probs = _check_occluders(occluders, occluded_per_id)
    # Fail on bad generator arguments before any file is written.
    SynthFaceGenerator(seed, image_size, trait_jitter)
    pairs = _pair_list(num_pairs, num_test_ids, test_images_per_id, pairs_rng(seed))
    holdout_pairs = _holdout_pairs(num_holdout_ids, num_holdout_pairs, test_images_per_id, seed)
    job = _Job(out_dir, num_train_ids, images_per_id, num_test_ids, test_images_per_id, num_pairs,
               num_occluded_ids, occluded_per_id, tuple(occluders), seed, image_size,
               trait_jitter, jpeg_quality, int(num_holdout_ids), int(num_holdout_pairs))
    os.makedirs(osp.join(out_dir, 'val'), exist_ok=True)
    encoded, records = _run_tasks(_tasks(job, names, probs, pairs, holdout_pairs), num_workers,
                                  progress)
    _write_annotations(job, pairs, holdout_pairs, encoded, records)
    meta = _meta(job, len(records), _command(job) if command is None else command)
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return meta
