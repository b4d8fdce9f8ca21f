"""Occluded protocol variants of a verification ``.bin`` (masked LFW and the like).

Recipe of docs/reference.md#how-mmoaml-builds-a-benchmark: from
any InsightFace verification ``.bin``, write one ``.bin`` per protocol with the **same pair
order and labels**, where only the occluded side of each pair changes:

- ``clean``: no occluder (P0: the source, re-encoded);
- ``mask_probe``: ``MedicalMaskOcclusion`` on the probe, image ``2k + 1`` of pair ``k`` (P1);
- ``mask_both``: ``MedicalMaskOcclusion`` on both images, drawn independently (P2);
- ``niqab_probe``: ``NiqabOcclusion`` on the probe (P5);
- ``sunglasses_probe``: ``SunglassesOcclusion`` on the probe (P4);
- ``random_probe``: ``RandomOcclusion`` on the probe (P3, a FROM-style random patch).

* **Held-out occluders.** Every occluder is built with ``styles='test'``: only its held-out
  styles (``HOLDOUT_STYLES``), which training pipelines (``styles='train'``) never draw.
* **Seeded per image.** Occluders get ``seed=seed`` and ``sample_idx`` = the image's index, so
  image ``i`` is occluded the same way whatever else is generated (``pipeline_state``); the
  probe of ``mask_both`` is the probe of ``mask_probe``.
* **One codec.** Every image, clean ones too, is decoded and re-encoded with the same codec and
  quality (default JPEG 95, AdaFace's conversion quality), so ``clean`` and an occluded
  protocol differ only by the occluder. With a lossless codec (``'.png'``) the changed pixels
  are exactly the covered ones.
* **Ground truth.** ``<stem>_<protocol>_masks.npz`` (format of
  :func:`~mmoaml.fileio.verification_bin.save_visibility_masks`, which
  ``VerificationBinDataset`` loads automatically) holds each image's visibility: the source
  ``<stem>_masks.npz`` if it exists, else ``face_region_prior``, times ``1 - covered`` on
  occluded images. ``<stem>_<protocol>_masks_<h>x<w>.npz`` holds the same masks area-averaged
  to each feature grid (:func:`mmoaml.structures.area_downsample`; default 7x7) as float32
  ``[2N, 1, h, w]``, for scoring the occlusion head (``visibility_mse``/``visibility_iou``).
* **Log.** ``<stem>_<protocol>_log.jsonl``: a header line (source file and SHA-256, protocol,
  occluder config, seed, codec, quality, grids, library versions) and one line per image
  (``index``, ``pair``, ``occluded``, the occluder's ``type``/``style``/``colour``/``accent``/
  ``params`` record, ``visible_fraction``, ``sha256`` of the written bytes).
  :func:`regenerate_from_log` rebuilds the variant from the header (the seeded occluders,
  not the recorded parameters: textures and polygon vertices are drawn from the same per-image
  generator but not all logged) and checks every image against its line, so the recorded
  hashes prove the regeneration exact. Encoded bytes depend on the OpenCV/libjpeg build, which
  the header records.
"""
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.logging import print_log

from mmoaml.fileio.image import decode_image, encode_image
from mmoaml.fileio.npz import open_npz
from mmoaml.fileio.verification_bin import (dump_verification_bin, load_verification_bin,
                                            load_visibility_masks, masks_path_for,
                                            save_visibility_masks)
from mmoaml.registry import TRANSFORMS
from mmoaml.structures import area_downsample, face_region_prior

__all__ = [
    'OcclusionProtocol', 'PROTOCOLS', 'VariantFiles', 'make_occluded_variants',
    'regenerate_from_log', 'grid_masks_path_for', 'load_grid_masks'
]

LOG_FORMAT = 'mmoaml-occluded-benchmark/1'
_SIDES = ('none', 'probe', 'both')
# Occluder arguments the generator fixes: every image occluded, held-out styles, per-image seed.
_FIXED_ARGS = ('type', 'prob', 'styles', 'holdout_styles', 'seed')


@dataclass(frozen=True)
class OcclusionProtocol:
    """One benchmark protocol.

    Args:
        name (str): the protocol's name, part of the output file names.
        occluder (str, optional): registered occluder type (a ``BaseOccluder``); None = clean.
        sides (str): ``'none'``, ``'probe'`` (image ``2k + 1`` of each pair) or ``'both'``.
    """
    name: str
    occluder: Optional[str]
    sides: str

    def occludes(self, index: int) -> bool:
        """Whether image ``index`` of the ``.bin`` is occluded."""
        return self.sides == 'both' or (self.sides == 'probe' and index % 2 == 1)


PROTOCOLS: Dict[str, OcclusionProtocol] = {
    p.name: p
    for p in (
        OcclusionProtocol('clean', None, 'none'),
        OcclusionProtocol('mask_probe', 'MedicalMaskOcclusion', 'probe'),
        OcclusionProtocol('mask_both', 'MedicalMaskOcclusion', 'both'),
        OcclusionProtocol('niqab_probe', 'NiqabOcclusion', 'probe'),
        OcclusionProtocol('sunglasses_probe', 'SunglassesOcclusion', 'probe'),
        OcclusionProtocol('random_probe', 'RandomOcclusion', 'probe'),
    )
}


class VariantFiles(NamedTuple):
    """The files of one protocol variant.

    Attributes:
        bin (str): the ``.bin``.
        masks (str): pixel visibility masks (``save_visibility_masks`` format).
        grids (dict): ``(h, w)`` -> path of the area-averaged masks.
        log (str): the JSON-lines log.
    """
    bin: str
    masks: str
    grids: Dict[Tuple[int, int], str]
    log: str


def grid_masks_path_for(bin_path: str, size: Tuple[int, int]) -> str:
    """The grid-mask file of a ``.bin``: ``<dir>/<stem>_masks_<h>x<w>.npz``."""
    root, _ = osp.splitext(str(bin_path))
    return f'{root}_masks_{int(size[0])}x{int(size[1])}.npz'


def _save_grid_masks(path: str, grid: np.ndarray) -> None:
    with open(path, 'wb') as f:
        np.savez_compressed(f, masks=grid)


def load_grid_masks(path: str) -> np.ndarray:
    """Load area-averaged masks written by :func:`make_occluded_variants` (no pickle allowed).

    Returns:
        np.ndarray: float32 ``[2N, 1, h, w]``, the visible fraction of each cell.
    """
    path = str(path)
    with open_npz(path, 'grid mask') as data:
        if 'masks' not in data:
            raise ValueError(f'{path}: not a grid mask .npz holding "masks" (keys: '
                             f'{sorted(data.files)})')
        grid = data['masks']
    if grid.dtype != np.float32 or grid.ndim != 4 or grid.shape[1] != 1:
        raise ValueError(f'{path}: masks must be float32 [2N, 1, h, w], got {grid.dtype} '
                         f'{grid.shape}')
    return grid


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(2**20), b''):
            digest.update(block)
    return digest.hexdigest()


def _occluder_cfg(protocol: OcclusionProtocol, seed: int,
                  options: Optional[dict]) -> Optional[dict]:
    if protocol.occluder is None:
        return None
    options = dict(options or {})
    fixed = sorted(set(options) & set(_FIXED_ARGS))
    if fixed:
        raise ValueError(f'occluder_options[{protocol.occluder!r}] may not set {fixed}: the '
                         'generator fixes prob=1, held-out styles and the seed')
    return dict(type=protocol.occluder, prob=1.0, styles='test', seed=int(seed), **options)


def _build_occluder(cfg: dict):
    """Build a registered occluder (the mmoaml scope imports mmoaml.datasets, which registers
    them, so this layer needs no import of it)."""
    try:
        return TRANSFORMS.build(dict(cfg, _scope_='mmoaml'))
    except TypeError as error:  # only occluders take `styles` and `seed`
        raise TypeError(f'{cfg["type"]} is not an occluder (a BaseOccluder subclass): '
                        f'{error}') from error


def _base_masks(src_bin: str, images: List[bytes]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """The source's ``<stem>_masks.npz`` when it exists (checked against the images)."""
    path = masks_path_for(src_bin)
    if not osp.isfile(path):
        return None, None
    masks = load_visibility_masks(path)
    if len(masks) != len(images):
        raise ValueError(f'{path}: {len(masks)} masks for the {len(images)} images of '
                         f'{src_bin}')
    return masks, path


def _check_protocols(protocols: Sequence[str],
                     occluder_options: Optional[Dict[str, dict]]) -> Dict[str, dict]:
    """Check the protocol names and that every option set belongs to a chosen occluder."""
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f'protocols must be names from {list(PROTOCOLS)}, got {list(protocols)}')
    options = occluder_options or {}
    used = {PROTOCOLS[p].occluder for p in protocols}
    stray = sorted(set(options) - used)
    if stray:
        raise ValueError(f'occluder_options names occluders no chosen protocol uses: {stray}')
    return options


def make_occluded_variants(src_bin: str,
                           out_dir: str,
                           protocols: Sequence[str] = tuple(PROTOCOLS),
                           seed: int = 0,
                           ext: str = '.jpg',
                           quality: int = 95,
                           grid_sizes: Sequence[Tuple[int, int]] = ((7, 7), ),
                           occluder_options: Optional[Dict[str, dict]] = None,
                           pickle_protocol: int = 4) -> Dict[str, VariantFiles]:
    """Write the protocol variants of a verification ``.bin`` (see the module docstring).

    Args:
        src_bin (str): the source ``.bin`` (loaded with the restricted unpickler). A sibling
            ``<stem>_masks.npz`` provides the clean images' visibility; else the face prior.
        out_dir (str): where ``<stem>_<protocol>.bin`` and its companions are written.
        protocols (Sequence[str]): names from :data:`PROTOCOLS`. Defaults to all of them.
        seed (int): the occluders' seed. Defaults to 0.
        ext (str): codec of every written image, as an extension. Defaults to ``'.jpg'``.
        quality (int): JPEG quality. Defaults to 95 (AdaFace's conversion quality,
            docs/reference.md#image-folders).
        grid_sizes (Sequence[tuple[int, int]]): grids of the area-averaged masks. Defaults to
            ``((7, 7),)`` (the body map of a 112x112 face).
        occluder_options (dict, optional): extra constructor arguments per occluder type
            (e.g. ``{'RandomOcclusion': dict(side_range=(0.3, 0.5))}``); ``prob``, ``styles``,
            ``holdout_styles`` and ``seed`` are fixed by the generator.
        pickle_protocol (int): 4, or 2 for Python-2 readers (``dump_verification_bin``).
            Defaults to 4.

    Returns:
        dict[str, VariantFiles]: protocol name -> its files.
    """
    options = _check_protocols(protocols, occluder_options)
    images, issame = load_verification_bin(src_bin)
    base_masks, masks_file = _base_masks(src_bin, images)
    source = dict(
        source=osp.basename(str(src_bin)),
        source_sha256=_sha256_file(src_bin),
        source_masks=None if masks_file is None else osp.basename(masks_file),
        source_masks_sha256=None if masks_file is None else _sha256_file(masks_file))
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(str(src_bin)))[0]
    settings = dict(
        seed=int(seed), ext=ext, quality=int(quality),
        grid_sizes=[[int(h), int(w)] for h, w in grid_sizes],
        pickle_protocol=int(pickle_protocol))
    written = {}
    for name in protocols:
        protocol = PROTOCOLS[name]
        header = dict(
            format=LOG_FORMAT, **source, protocol=name, sides=protocol.sides,
            occluder_cfg=_occluder_cfg(protocol, seed, options.get(protocol.occluder)),
            **settings, num_images=len(images), opencv=cv2.__version__, numpy=np.__version__)
        written[name] = _write_variant(src_bin, images, issame, base_masks, header,
                                       osp.join(out_dir, f'{stem}_{name}'))
    return written


def _write_variant(src_bin: str, images: List[bytes], issame: np.ndarray,
                   base_masks: Optional[np.ndarray], header: dict, root: str) -> VariantFiles:
    """Occlude, re-encode and write one protocol; ``root`` is the output path minus ``.bin``."""
    protocol = PROTOCOLS[header['protocol']]
    occluder = None if header['occluder_cfg'] is None else _build_occluder(header['occluder_cfg'])
    encoded, masks, lines = [], [], []
    for i, buf in enumerate(images):
        source = f'{src_bin}#{i}'
        img = decode_image(buf, source)
        vis = (face_region_prior(img.shape[:2]) if base_masks is None else
               base_masks[i].astype(np.float32) / 255.0)
        if vis.shape != img.shape[:2]:
            raise ValueError(f'{masks_path_for(src_bin)}#{i}: mask of shape {vis.shape} for '
                             f'image {source} of shape {img.shape[:2]}')
        record = None
        if protocol.occludes(i):
            results = occluder(
                dict(img=img, visibility_mask=vis, sample_idx=i, img_path=source))
            img, vis, record = results['img'], results['visibility_mask'], results['occluder']
        data = encode_image(img, header['ext'], header['quality'])
        mask = np.round(vis * 255.0).astype(np.uint8)
        encoded.append(data)
        masks.append(mask)
        lines.append(
            dict(index=i, pair=i // 2, occluded=record is not None, occluder=record,
                 visible_fraction=round(float(mask.mean()) / 255.0, 6),
                 sha256=hashlib.sha256(data).hexdigest()))
    masks = np.stack(masks)
    files = VariantFiles(
        bin=root + '.bin', masks=masks_path_for(root + '.bin'),
        grids={(h, w): grid_masks_path_for(root + '.bin', (h, w))
               for h, w in header['grid_sizes']},
        log=root + '_log.jsonl')
    dump_verification_bin(files.bin, encoded, issame, protocol=header['pickle_protocol'])
    save_visibility_masks(files.masks, masks)
    pixel_vis = torch.from_numpy(masks).float().div_(255.0)
    for size, path in files.grids.items():
        _save_grid_masks(path, area_downsample(pixel_vis, size).numpy())
    with open(files.log, 'w') as f:
        for entry in [header] + lines:
            f.write(json.dumps(entry, sort_keys=True) + '\n')
    print_log(f'occluded benchmark: wrote {files.bin} ({len(encoded)} images, '
              f'{sum(e["occluded"] for e in lines)} occluded, protocol {header["protocol"]})',
              logger='current')
    return files


def _read_log(path: str) -> Tuple[dict, List[str]]:
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        header = json.loads(lines[0])
    except (IndexError, json.JSONDecodeError) as err:
        raise ValueError(f'{path}: not an occluded-benchmark log ({err})') from err
    if not isinstance(header, dict) or header.get('format') != LOG_FORMAT:
        raise ValueError(f'{path}: first line is not a {LOG_FORMAT} header')
    return header, lines[1:]


def regenerate_from_log(log_path: str, src_bin: str, out_dir: str) -> VariantFiles:
    """Rebuild a variant from its log and check that every image comes out identical.

    Args:
        log_path (str): a ``<stem>_<protocol>_log.jsonl`` written by
            :func:`make_occluded_variants`.
        src_bin (str): the source ``.bin`` (its SHA-256, and that of its sibling masks file
            if one was used, must match the log).
        out_dir (str): where the regenerated files go (same names as the originals).

    Returns:
        VariantFiles: the regenerated files.

    Raises:
        ValueError: the source differs from the logged one, or an image, its occluder record
            or its visibility differs from its log line (named by index).
    """
    header, recorded = _read_log(log_path)
    if header['protocol'] not in PROTOCOLS:
        raise ValueError(f'{log_path}: unknown protocol {header["protocol"]!r}')
    if _sha256_file(src_bin) != header['source_sha256']:
        raise ValueError(f'{src_bin}: SHA-256 differs from the source {header["source"]!r} '
                         f'recorded in {log_path}')
    images, issame = load_verification_bin(src_bin)
    base_masks, masks_file = _base_masks(src_bin, images)
    masks_sha = None if masks_file is None else _sha256_file(masks_file)
    if masks_sha != header['source_masks_sha256']:
        raise ValueError(f'{log_path}: the source masks differ from the logged ones '
                         f'({header["source_masks"]!r} vs {masks_file!r})')
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(header['source'])[0]
    files = _write_variant(src_bin, images, issame, base_masks, header,
                           osp.join(out_dir, f'{stem}_{header["protocol"]}'))
    _, regenerated = _read_log(files.log)
    if len(regenerated) != len(recorded):
        raise ValueError(f'{log_path}: {len(recorded)} image lines, regenerated '
                         f'{len(regenerated)}')
    for old, new in zip(recorded, regenerated):
        if json.loads(old) != json.loads(new):
            index = json.loads(new)['index']
            raise ValueError(
                f'{log_path}: image {index} regenerated differently ({new} vs logged {old}); '
                f'logged with OpenCV {header["opencv"]}, NumPy {header["numpy"]}, now OpenCV '
                f'{cv2.__version__}, NumPy {np.__version__}')
    return files
