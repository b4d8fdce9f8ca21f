"""Faces stored as image files in one folder per identity."""
import logging
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from mmoaml.registry import DATASETS
from .base_face_dataset import BaseFaceDataset

__all__ = ['FaceFolderDataset', 'IMG_EXTENSIONS']

#: File extensions (lower case) taken as images when a folder is scanned.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


@DATASETS.register_module()
class FaceFolderDataset(BaseFaceDataset):
    """Aligned faces in ``<image root>/<identity>/<image>`` (e.g. CASIA-WebFace as image files).

    The image root is ``data_root`` joined with ``data_prefix['img_path']`` (default: the data
    root itself). Samples come from either

    * a scan (``ann_file=''``): every sub-folder of the image root is an identity; its files with
      an extension in ``extensions`` (case-insensitive) are its images. Identity folders are
      sorted by name (string order) and label = position in that order; files are sorted by
      name. Folders without images are left out (with a warning), so every class has samples.
      This is the layout AdaFace's ``convert.py --make_image_files`` writes (``imgs/<label>/``).
    * a list file (``ann_file``, relative to ``data_root``): one sample per line, paths relative
      to the image root, either ``<path> <label>`` (integer labels used as given, each below
      ``BaseFaceDataset.label_limit`` of the number of lines; see
      ``BaseFaceDataset.set_classes_from_labels``) or ``<path>`` alone (identity = the name of
      the file's parent folder; identities sorted and numbered as in a scan). All lines must use
      one form; blank lines are ignored; paths cannot contain whitespace. Listed files are not
      checked at start-up: a missing one fails (or is skipped) when it is loaded.

    ``metainfo['classes']`` holds the identity names (folder names, or ``'0'..'C-1'`` for
    explicit labels) once the dataset is fully initialised; ``gt_label`` indexes it.

    Args:
        data_root (str): the dataset's root folder. Defaults to ''.
        ann_file (str): optional list file, see above. Defaults to '' (scan the folders).
        data_prefix (dict): ``img_path`` = the image root relative to ``data_root``.
            Defaults to ``dict(img_path='')``.
        extensions (Sequence[str]): image extensions for a scan. Defaults to
            :data:`IMG_EXTENSIONS`.
        **kwargs: ``BaseFaceDataset`` / ``BaseDataset`` arguments (``pipeline``,
            ``skip_corrupt``, ``lazy_init``, ``test_mode``, ``indices``, ...).

    Examples:
        >>> train_dataset = dict(
        ...     type='FaceFolderDataset',
        ...     data_root='data/casia_webface_imgs',
        ...     pipeline=[dict(type='FaceAugmenter'), dict(type='PackFaceInputs')])
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = '',
                 data_prefix: Optional[dict] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 **kwargs) -> None:
        self.extensions = tuple(e.lower() for e in extensions)
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=dict(img_path='') if data_prefix is None else data_prefix,
            **kwargs)

    @property
    def img_root(self) -> str:
        """The folder that image paths are relative to."""
        return self.data_prefix['img_path'] or self.data_root

    def load_data_list(self) -> List[dict]:
        """List the samples (paths and labels) from the list file or a folder scan."""
        if self.ann_file:
            rel_paths, labels, classes = self._read_list_file(self.ann_file)
        else:
            rel_paths, labels, classes = self._scan(self.img_root)
        if classes is None:
            self.set_classes_from_labels(np.asarray(labels), self.ann_file)
        else:
            self._metainfo['classes'] = classes
        return [
            dict(img_path=osp.join(self.img_root, rel), gt_label=int(label))
            for rel, label in zip(rel_paths, labels)
        ]

    def _scan(self, root: str) -> Tuple[List[str], List[int], Tuple[str, ...]]:
        if not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: image folder not found: {root}')
        identities = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        rel_paths, labels, classes, empty = [], [], [], []
        for identity in identities:
            files = sorted(
                entry.name for entry in os.scandir(osp.join(root, identity))
                if entry.is_file() and osp.splitext(entry.name)[1].lower() in self.extensions)
            if not files:
                empty.append(identity)
                continue
            label = len(classes)
            classes.append(identity)
            rel_paths.extend(osp.join(identity, name) for name in files)
            labels.extend([label] * len(files))
        if not classes:
            raise ValueError(f'{type(self).__name__}: no images with extensions '
                             f'{self.extensions} in identity sub-folders of {root}')
        if empty:
            print_log(
                f'{type(self).__name__}: {len(empty)} identity folders of {root} hold no '
                f'image and are left out (first: {empty[0]!r})',
                logger='current',
                level=logging.WARNING)
        return rel_paths, labels, tuple(classes)

    def _read_list_file(
            self, path: str) -> Tuple[List[str], List[int], Optional[Tuple[str, ...]]]:
        """Parse a list file; ``classes`` is None when the labels are explicit integers."""
        with open(path, encoding='utf-8') as f:
            rows = [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]
        if not rows:
            raise ValueError(f'{type(self).__name__}: list file {path} holds no sample')
        width = len(rows[0][1])
        for n, fields in rows:
            if len(fields) != width or width not in (1, 2):
                raise ValueError(
                    f'{type(self).__name__}: {path}, line {n}: expected '
                    f'"<path> <label>" or "<path>" on every line (the first line has '
                    f'{width} fields), got {" ".join(fields)!r}')
        rel_paths = [fields[0] for _, fields in rows]
        if width == 2:
            labels = []
            for n, fields in rows:
                where = f'{type(self).__name__}: {path}, line {n}'
                try:
                    value = int(fields[1])
                except ValueError:
                    raise ValueError(f'{where}: label {fields[1]!r} is not an integer') from None
                labels.append(self.check_label(value, len(rows), where))
            return rel_paths, labels, None
        names = []
        for (n, _), rel in zip(rows, rel_paths):
            parent = osp.basename(osp.dirname(osp.normpath(rel)))
            if not parent:
                raise ValueError(f'{type(self).__name__}: {path}, line {n}: {rel!r} has no '
                                 f'identity folder to take the label from')
            names.append(parent)
        classes = tuple(sorted(set(names)))
        index = {name: k for k, name in enumerate(classes)}
        return rel_paths, [index[name] for name in names], classes
