"""Make a verification ``.bin`` (``VerificationBinDataset``) from a folder of identities.

Input: ``<folder>/<identity>/<image>`` with aligned faces. Output: ``out`` with ``num_pairs``
pairs, half same-identity and half different-identity (an odd count gives the extra pair to the
different ones), drawn with ``--seed`` and shuffled; the image bytes are stored as they are.
Same pairs: an identity with at least two images, uniformly, then two different images of it;
different pairs: two different identities, one image each. No pair is drawn twice while
others remain. ``<out stem>_pairs.txt`` lists each pair (``path1 path2 issame``, paths relative
to the folder), so the set can be checked or rebuilt.

Example (validation on your own held-out identities, then occluded variants)::

    python tools/dataset_converters/folder_to_bin.py data/my_test_faces data/my_val/my_set.bin \\
        --num-pairs 3000 --seed 0
    python tools/dataset_converters/make_occluded_bin.py data/my_val/my_set.bin \\
        --out-dir data/my_val/occluded
"""
import argparse
import os
import os.path as osp
from typing import List, Tuple

import numpy as np

from mmoaml.datasets import IMG_EXTENSIONS
from mmoaml.fileio import dump_verification_bin


def scan_identities(folder: str) -> List[List[str]]:
    """Sorted image paths of each identity folder with images, in sorted name order."""
    if not osp.isdir(folder):
        raise SystemExit(f'folder_to_bin: {folder} is not a folder')
    identities = []
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if osp.isdir(path):
            images = sorted(
                osp.join(path, f) for f in os.listdir(path)
                if f.lower().endswith(IMG_EXTENSIONS) and osp.isfile(osp.join(path, f)))
            if images:
                identities.append(images)
    return identities


def draw_pairs(identities: List[List[str]], num_pairs: int,
               seed: int = 0) -> List[Tuple[str, str, bool]]:
    """``num_pairs`` balanced ``(path1, path2, issame)`` pairs, shuffled (see the module doc)."""
    if num_pairs < 2:
        raise SystemExit(f'folder_to_bin: --num-pairs must be at least 2, got {num_pairs}')
    multi = [images for images in identities if len(images) >= 2]
    if len(identities) < 2 or not multi:
        raise SystemExit(f'folder_to_bin: need at least 2 identities and one with 2 or more '
                         f'images; found {len(identities)} identities, {len(multi)} with 2+')
    rng = np.random.default_rng(seed)
    num_same = num_pairs // 2
    pairs, seen = [], set()

    def add(a: str, b: str, same: bool, attempt: int) -> bool:
        key = (min(a, b), max(a, b))
        if key in seen and attempt < 20:
            return False
        seen.add(key)
        pairs.append((a, b, same))
        return True

    for _ in range(num_same):
        for attempt in range(21):
            images = multi[rng.integers(len(multi))]
            i, j = rng.choice(len(images), 2, replace=False)
            if add(images[i], images[j], True, attempt):
                break
    for _ in range(num_pairs - num_same):
        for attempt in range(21):
            p, q = rng.choice(len(identities), 2, replace=False)
            a = identities[p][rng.integers(len(identities[p]))]
            b = identities[q][rng.integers(len(identities[q]))]
            if add(a, b, False, attempt):
                break
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', help='folder of identities: <folder>/<identity>/<image>')
    parser.add_argument('out', help='the .bin file to write')
    parser.add_argument('--num-pairs', type=int, default=3000,
                        help='pairs, half same / half different (default 3000)')
    parser.add_argument('--seed', type=int, default=0, help='pair seed (default 0)')
    args = parser.parse_args(argv)
    pairs = draw_pairs(scan_identities(args.folder), args.num_pairs, args.seed)
    images = []
    for a, b, _ in pairs:
        for path in (a, b):
            with open(path, 'rb') as f:
                images.append(f.read())
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    dump_verification_bin(args.out, images, [same for _, _, same in pairs])
    listing = osp.splitext(args.out)[0] + '_pairs.txt'
    with open(listing, 'w', encoding='utf-8') as f:
        for a, b, same in pairs:
            f.write(f'{osp.relpath(a, args.folder)} {osp.relpath(b, args.folder)} {int(same)}\n')
    num_same = sum(same for _, _, same in pairs)
    print(f'{args.out}: {len(pairs)} pairs ({num_same} same, {len(pairs) - num_same} '
          f'different), list in {listing}')


if __name__ == '__main__':
    main()
