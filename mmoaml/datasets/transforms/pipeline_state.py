"""Per-sample state that mmoaml's face transforms share: the image, its visibility mask, the RNG.

Randomness: every transform call draws from one ``np.random.Generator`` made for that call.

* ``seed=None`` (training): the generator is seeded from NumPy's global RNG. MMEngine seeds that
  RNG per dataloader worker (``worker_init_fn``) and ``np.random.seed`` fixes it in a single
  process, so runs are reproducible under MMEngine's ``randomness`` setting and workers never
  repeat each other. (A generator created in ``__init__`` would be copied into every forked worker
  and every worker would draw the same sequence.) MMEngine's ``worker_init_fn`` reseeds NumPy with
  the same per-worker seed whenever workers start, so training configs keep
  ``persistent_workers=True`` (MMPretrain's default); with workers restarted every epoch, every
  NumPy-driven transform, MMPretrain's included, restarts the same random sequence each epoch
  (only the sampler's shuffle then differs).
* ``seed=int`` (fixed benchmarks, e.g. a masked LFW): the generator depends only on
  ``(seed, transform name, sample_idx)``, so a sample is altered the same way whatever the worker
  count, the order or the epoch, and two transforms given one seed do not draw alike.
"""
import zlib
from typing import Optional

import numpy as np

from mmoaml.structures.face_template import face_region_prior

_INT64_MAX = np.iinfo(np.int64).max


def sample_rng(results: dict, seed: Optional[int], owner: str) -> np.random.Generator:
    """The generator for one call of the transform named ``owner`` on ``results``.

    Args:
        results (dict): the pipeline dict; with an int ``seed`` it must hold ``sample_idx``.
        seed (int, optional): None = draw from NumPy's global RNG; int = per-sample seeding.
        owner (str): the transform's name, mixed into the per-sample seed.

    Returns:
        np.random.Generator: a fresh generator.
    """
    if seed is None:
        return np.random.default_rng(np.random.randint(_INT64_MAX, dtype=np.int64))
    if 'sample_idx' not in results:
        raise KeyError(f'{owner}(seed={seed}) draws per sample and needs results["sample_idx"] '
                       f'(sample {results.get("img_path", "<unknown>")!r} has none)')
    salt = zlib.crc32(owner.encode())
    return np.random.default_rng((int(seed), salt, int(results['sample_idx'])))


def face_image(results: dict, owner: str) -> np.ndarray:
    """``results['img']`` checked to be an ``H x W x 3`` uint8 image; errors name the sample."""
    img = results.get('img')
    source = results.get('img_path', '<unknown>')
    if not isinstance(img, np.ndarray):
        raise TypeError(f'{owner}: results["img"] of {source!r} must be a numpy array, '
                        f'got {type(img).__name__}')
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'{owner}: results["img"] of {source!r} must be H x W x 3 uint8 (BGR), '
                         f'got shape {img.shape} dtype {img.dtype}')
    return img


def visibility_mask(results: dict, owner: str) -> np.ndarray:
    """The sample's ``H x W`` float32 visibility mask (1 = visible face), or the face prior.

    Args:
        results (dict): holds ``img`` and optionally ``visibility_mask``.
        owner (str): the calling transform's name, for error messages.

    Returns:
        np.ndarray: ``results['visibility_mask']`` as float32 (not copied when already float32),
        else ``face_region_prior(img.shape[:2])`` (a fresh array).
    """
    shape = results['img'].shape[:2]
    mask = results.get('visibility_mask')
    if mask is None:
        return face_region_prior(shape)
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f'{owner}: results["visibility_mask"] of '
                         f'{results.get("img_path", "<unknown>")!r} has shape {mask.shape}, '
                         f'the image is {shape}')
    return mask.astype(np.float32, copy=False)
