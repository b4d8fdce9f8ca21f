"""Check that the data files a config reads exist, before anything is built.

:func:`check_data_files` walks every dataset config of the config's loaders (train, val, test
and the loaders of custom hooks such as the occlusion stream; nested ``dataset`` /
``datasets`` of wrappers included) and raises one ``FileNotFoundError`` that lists every
missing file with the tool or public source that provides it (docs/data_preparation.md).
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, Iterator, List, Sequence, Tuple

from mmengine.config import Config

from mmoaml.datagen import PROTOCOLS
from mmoaml.utils.setup_env import dataloader_cfgs

#: The five standard verification sets shipped inside InsightFace's CASIA-WebFace pack.
STANDARD_BINS = ('lfw', 'cfp_fp', 'agedb_30', 'calfw', 'cplfw')
#: Where the standard sets are looked for when no loader of the config names them.
DEFAULT_BIN_ROOT = 'data/faces_webface_112x112'

#: What provides each kind of data file (docs/data_preparation.md).
SOURCES = {
    'casia_rec': ("CASIA-WebFace RecordIO 'faces_webface_112x112' (train.rec, train.idx) from "
                  "InsightFace's data zoo (deepinsight/insightface, recognition datasets), "
                  'unpacked to {root}; own identity folders: python '
                  'tools/dataset_converters/folder_to_rec.py FOLDER {root}'),
    'standard_bin': ("the five verification sets (lfw, cfp_fp, agedb_30, calfw, cplfw .bin) come "
                     "with InsightFace's 'faces_webface_112x112' pack; unpack it to {root}"),
    'occluded_bin': ('python tools/dataset_converters/make_occluded_bin.py {src} --out-dir {root} '
                     '--protocols {protocols}'),
    'synthface': ('SynthFace, generated (docs/synthface.md): python tools/demo_synthface.py '
                  'writes it all; by hand python tools/dataset_converters/make_synthface.py '
                  '{root}, then python tools/dataset_converters/make_occluded_bin.py '
                  '{root}/val/synthface_clean.bin --out-dir {root}/val --protocols clean '
                  'mask_probe niqab_probe sunglasses_probe'),
    'own_bin': ('python tools/dataset_converters/folder_to_bin.py FOLDER {path} (verification '
                'pairs from a folder of identities)'),
    'face_folder': ('a folder of identities (<root>/<identity>/<image>), e.g. CASIA-WebFace '
                    "images written by AdaFace's convert.py --make_image_files, or your own "
                    'aligned 112x112 faces'),
    'occluded_faces': ('the optional private occluded-face set: <root>/images/<identity>/<name>'
                       '.jpg with <root>/masks/<identity>/<name>.png (255 = visible face); no '
                       'public data set or tool provides it. Without one, use the default '
                       'occlusion stream (configs/_base_/datasets/occluded_faces.py: CASIA with a '
                       'synthetic occluder)'),
}


def _join(root: str, path: str) -> str:
    if not path or osp.isabs(path) or not root:
        return path or root
    return osp.join(root, path)


def _iter_datasets(dataset) -> Iterator[dict]:
    """Every leaf dataset config inside ``dataset`` (wrappers such as ConcatDataset or
    RepeatDataset are walked through)."""
    if isinstance(dataset, dict):
        nested = [dataset[k] for k in ('dataset', 'datasets') if k in dataset]
        if not nested:
            yield dataset
        for value in nested:
            yield from _iter_datasets(value)
    elif isinstance(dataset, (list, tuple)):
        for item in dataset:
            yield from _iter_datasets(item)


def _split_protocol(stem: str) -> Tuple[str, str]:
    """``('lfw', 'mask_probe')`` for ``'lfw_mask_probe'``; ``('', '')`` if no protocol ends it."""
    for protocol in sorted(PROTOCOLS, key=len, reverse=True):
        if stem.endswith('_' + protocol) and len(stem) > len(protocol) + 1:
            return stem[:-len(protocol) - 1], protocol
    return '', ''


def _needed_files(dataset: dict) -> List[Tuple[str, str, tuple]]:
    """``(path, kind, source key)`` of every file or folder the dataset config reads."""
    kind = dataset.get('type', '')
    root = dataset.get('data_root', '') or ''
    needed = []
    if kind == 'MXFaceDataset':
        source = ('casia_rec', root)
        for key, default in (('rec_file', 'train.rec'), ('idx_file', 'train.idx')):
            needed.append((_join(root, dataset.get(key, default)), 'file', source))
    elif kind == 'VerificationBinDataset':
        path = _join(root, dataset.get('ann_file', 'lfw.bin'))
        stem = osp.splitext(osp.basename(path))[0]
        src, protocol = _split_protocol(stem)
        if 'synthface' in path:
            source = ('synthface', _synthface_root(path))
        elif stem in STANDARD_BINS:
            source = ('standard_bin', osp.dirname(path))
        elif src:
            source = ('occluded_bin', src, osp.dirname(path), protocol)
        else:
            source = ('own_bin', path)
        needed.append((path, 'file', source))
    elif kind in ('FaceFolderDataset', 'OccludedFaceDataset'):
        synth = 'synthface' in root
        if kind == 'FaceFolderDataset':
            prefix = (dataset.get('data_prefix') or {}).get('img_path', '')
            source = (('synthface', _synthface_root(osp.join(root, 'x'))) if synth else
                      ('face_folder', root))
            needed.append((_join(root, prefix), 'folder', source))
        else:
            source = (('synthface', _synthface_root(osp.join(root, 'x'))) if synth else
                      ('occluded_faces', root))
            for key, default in (('img_dir', 'images'), ('mask_dir', 'masks')):
                needed.append((_join(root, dataset.get(key, default)), 'folder', source))
        if dataset.get('ann_file'):
            needed.append((_join(root, dataset['ann_file']), 'file', source))
    # SynthFaceDataset renders in memory; other types are not known here and not checked.
    return needed


def _synthface_root(path: str) -> str:
    """The innermost folder above ``path`` whose name contains 'synthface' (the generator's
    output folder), else the file's folder."""
    folders = osp.dirname(path).split('/')
    for end in range(len(folders), 0, -1):
        if 'synthface' in folders[end - 1]:
            return '/'.join(folders[:end])
    return osp.dirname(path)


def _describe(source: tuple, protocols: List[str], bin_roots: Dict[str, str]) -> str:
    key = source[0]
    if key == 'occluded_bin':
        src_stem, out_dir = source[1], source[2]
        src = osp.join(bin_roots.get(src_stem, DEFAULT_BIN_ROOT), f'{src_stem}.bin')
        return SOURCES[key].format(src=src, root=out_dir, protocols=' '.join(protocols))
    if key == 'own_bin':
        return SOURCES[key].format(path=source[1])
    return SOURCES[key].format(root=source[1] or '.')


def _stage(loader_name: str) -> str:
    if loader_name.startswith('custom_hooks'):
        return 'train'  # hook loaders (the occlusion stream) feed training
    return loader_name.split('_dataloader', 1)[0]


def check_data_files(cfg: Config, stages: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Raise one ``FileNotFoundError`` listing every data file the config's loaders miss.

    For each dataset config (walked through ``dataset``/``datasets`` of wrappers) the files
    its type reads: ``FaceFolderDataset`` its image folder (``data_root`` joined with
    ``data_prefix.img_path``) and ``ann_file`` if set; ``MXFaceDataset`` ``rec_file`` and
    ``idx_file``; ``VerificationBinDataset`` ``ann_file`` under ``data_root``;
    ``OccludedFaceDataset`` its ``img_dir`` and ``mask_dir`` (and ``ann_file``).
    ``SynthFaceDataset`` renders in memory and needs nothing. Each missing file is listed once
    with the loaders that read it, grouped under the tool or public source that provides it.

    Args:
        cfg (Config): The merged config.
        stages (Sequence[str]): Which loaders to check: ``'train'`` (``train_dataloader`` and
            the loaders of custom hooks), ``'val'``, ``'test'``. Defaults to all three.

    Raises:
        FileNotFoundError: Some file or folder is missing; the message names all of them.
    """
    unknown = set(stages) - {'train', 'val', 'test'}
    if unknown:
        raise ValueError(f'check_data_files: unknown stages {sorted(unknown)}; expected '
                         "'train', 'val' or 'test'")
    needed: 'OrderedDict[str, dict]' = OrderedDict()
    bin_roots: Dict[str, str] = {}
    for loader_name, loader in dataloader_cfgs(cfg):
        if _stage(loader_name) not in stages:
            continue
        for dataset in _iter_datasets(loader.get('dataset')):
            for path, kind, source in _needed_files(dataset):
                if source[0] == 'standard_bin':
                    bin_roots.setdefault(osp.splitext(osp.basename(path))[0], source[1])
                entry = needed.setdefault(path, dict(kind=kind, source=source, loaders=[]))
                if loader_name not in entry['loaders']:
                    entry['loaders'].append(loader_name)

    groups: 'OrderedDict[tuple, dict]' = OrderedDict()
    for path, entry in needed.items():
        exists = osp.isdir(path) if entry['kind'] == 'folder' else osp.isfile(path)
        if exists:
            continue
        source = entry['source']
        group_key = source[:3] if source[0] == 'occluded_bin' else source
        group = groups.setdefault(group_key, dict(lines=[], protocols=[]))
        what = 'folder' if entry['kind'] == 'folder' else 'file'
        group['lines'].append(f'  - {path} ({what}; {", ".join(entry["loaders"])})')
        if source[0] == 'occluded_bin' and source[3] not in group['protocols']:
            group['protocols'].append(source[3])
    if not groups:
        return
    count = sum(len(g['lines']) for g in groups.values())
    lines = [f'{count} data file(s) missing for the {"/".join(stages)} loaders of '
             f'{osp.basename(cfg.filename or "the config")} '
             '(docs/data_preparation.md says where each comes from):']
    for key, group in groups.items():
        lines.extend(group['lines'])
        lines.append('    from: ' + _describe(key, group['protocols'], bin_roots))
    raise FileNotFoundError('\n'.join(lines))
