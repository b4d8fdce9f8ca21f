"""Pack a folder of identities into an InsightFace-style RecordIO pair (``MXFaceDataset``).

Input: ``<folder>/<identity>/<image>`` with aligned faces (112x112 for the CASIA configs).
Identities are numbered 0, 1, ... in sorted name order, as ``FaceFolderDataset`` numbers them;
the image bytes are stored as they are (no re-encoding), read one at a time while writing.
Writes ``<out_dir>/<name>.rec``, ``<out_dir>/<name>.idx`` and ``<out_dir>/<name>_classes.txt``
(identity names, one per line in label order).

Example (the main stream of configs/oaml_ir50.py from your own faces)::

    python tools/dataset_converters/folder_to_rec.py data/my_faces data/faces_webface_112x112
"""
import argparse
import os
import os.path as osp
from typing import Iterator, List, Tuple

from mmoaml.datasets import IMG_EXTENSIONS
from mmoaml.fileio import write_face_recordio


def scan_identities(folder: str) -> List[Tuple[str, List[str]]]:
    """``(identity name, sorted image paths)`` of every identity folder with images, sorted."""
    if not osp.isdir(folder):
        raise SystemExit(f'folder_to_rec: {folder} is not a folder')
    identities = []
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if not osp.isdir(path):
            continue
        images = sorted(
            osp.join(path, f) for f in os.listdir(path)
            if f.lower().endswith(IMG_EXTENSIONS) and osp.isfile(osp.join(path, f)))
        if images:
            identities.append((name, images))
    if not identities:
        raise SystemExit(f'folder_to_rec: no identity folder with images in {folder} '
                         f'(extensions {", ".join(IMG_EXTENSIONS)})')
    return identities


class _Samples:
    """``(image bytes, label)`` read lazily, so a large folder is never held in memory."""

    def __init__(self, identities: List[Tuple[str, List[str]]]) -> None:
        self.items = [(path, label) for label, (_, paths) in enumerate(identities)
                      for path in paths]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Tuple[bytes, float]]:
        for path, label in self.items:
            with open(path, 'rb') as f:
                yield f.read(), float(label)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', help='folder of identities: <folder>/<identity>/<image>')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--name', default='train', help="file stem (default 'train')")
    args = parser.parse_args(argv)
    identities = scan_identities(args.folder)
    os.makedirs(args.out_dir, exist_ok=True)
    samples = _Samples(identities)
    rec = osp.join(args.out_dir, f'{args.name}.rec')
    idx = osp.join(args.out_dir, f'{args.name}.idx')
    write_face_recordio(rec, idx, samples)
    with open(osp.join(args.out_dir, f'{args.name}_classes.txt'), 'w', encoding='utf-8') as f:
        f.writelines(f'{name}\n' for name, _ in identities)
    print(f'{rec}: {len(samples)} images of {len(identities)} identities '
          f'(num_classes={len(identities)})')


if __name__ == '__main__':
    main()
