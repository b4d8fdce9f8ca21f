"""Write occluded protocol variants of verification .bin files (masked LFW, CFP-FP, ...).

For each source ``<stem>.bin`` and each protocol, writes into ``out_dir``:
``<stem>_<protocol>.bin`` (same pair order and labels), ``<stem>_<protocol>_masks.npz``
(pixel visibility, picked up by ``VerificationBinDataset``), ``<stem>_<protocol>_masks_7x7.npz``
(area-averaged, for the occlusion head) and ``<stem>_<protocol>_log.jsonl`` (per-image
occluder log). Occluders use their held-out styles only. See
``mmoaml/datagen/occluded_benchmark.py`` for the protocols and file formats.

Examples::

    # all protocols of the five standard sets
    python tools/dataset_converters/make_occluded_bin.py \\
        data/faces_webface_112x112/{lfw,cfp_fp,agedb_30,calfw,cplfw}.bin \\
        --out-dir data/occluded --seed 0

    # regenerate one variant exactly from its log (checks every image's hash)
    python tools/dataset_converters/make_occluded_bin.py data/faces_webface_112x112/lfw.bin \\
        --out-dir /tmp/check --regenerate data/occluded/lfw_mask_probe_log.jsonl
"""
import argparse
import json

import numpy as np

from mmoaml.datagen import PROTOCOLS, make_occluded_variants, regenerate_from_log
from mmoaml.fileio import load_visibility_masks
from mmoaml.utils import register_all_modules


def parse_grid(text: str):
    h, _, w = text.partition('x')
    return int(h), int(w or h)


def summary(name: str, files) -> str:
    masks = load_visibility_masks(files.masks)
    with open(files.log) as f:
        lines = [json.loads(line) for line in f][1:]
    occluded = [line['index'] for line in lines if line['occluded']]
    styles = sorted({line['occluder']['style'] for line in lines if line['occluded']})
    mean_vis = float(np.mean(masks[occluded]) / 255) if occluded else float('nan')
    return (f'{name:18s} {len(lines):7d} images {len(occluded):7d} occluded   '
            f'mean visibility of occluded {mean_vis:.3f}   styles {styles}   -> {files.bin}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sources', nargs='+', help='verification .bin files')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--protocols', nargs='+', default=list(PROTOCOLS),
                        choices=list(PROTOCOLS), help='protocols (default: all)')
    parser.add_argument('--seed', type=int, default=0, help='occluder seed (default 0)')
    parser.add_argument('--ext', default='.jpg', help="codec of every image (default '.jpg')")
    parser.add_argument('--quality', type=int, default=95, help='JPEG quality (default 95)')
    parser.add_argument('--grids', nargs='+', type=parse_grid, default=[(7, 7)],
                        help='grids of the area-averaged masks, e.g. 7x7 14x14 (default 7x7)')
    parser.add_argument('--pickle-protocol', type=int, default=4, choices=[2, 4],
                        help='pickle protocol of the written .bin (default 4)')
    parser.add_argument('--regenerate', metavar='LOG',
                        help='rebuild the variant recorded in LOG from the single source and '
                        'check it image by image')
    args = parser.parse_args()
    register_all_modules()

    if args.regenerate:
        if len(args.sources) != 1:
            parser.error('--regenerate takes exactly one source .bin')
        files = regenerate_from_log(args.regenerate, args.sources[0], args.out_dir)
        print(f'regenerated identically: {files.bin}')
        return
    for src in args.sources:
        written = make_occluded_variants(
            src, args.out_dir, protocols=args.protocols, seed=args.seed, ext=args.ext,
            quality=args.quality, grid_sizes=args.grids, pickle_protocol=args.pickle_protocol)
        print(f'{src}:')
        for name, files in written.items():
            print('  ' + summary(name, files))


if __name__ == '__main__':
    main()
