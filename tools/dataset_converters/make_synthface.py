"""Write a SynthFace data set: procedural faces in the layouts of real face data.

Writes ``train/`` (face folder), ``val/synthface_clean.bin`` (verification pairs over disjoint
identities), ``occluded/`` (occluded faces with pixel visibility masks) and ``meta.json``; see
``mmoaml.datagen.synthface.writer`` for the layout. The output is a function of the
arguments (the seed in particular): ``meta.json`` records the command that regenerates it.
Occluded benchmark variants of the pairs are made by ``make_occluded_bin.py``.

Example::

    python tools/dataset_converters/make_synthface.py data/synthface \\
        --num-train-ids 2000 --images-per-id 20 --num-test-ids 300 --num-pairs 3000 \\
        --workers 8
"""
import argparse
import shlex
import sys
import time

from mmengine.utils import ProgressBar

from mmoaml.datagen import DEFAULT_OCCLUDERS, DEFAULT_TRAIT_JITTER, write_synthface
from mmoaml.utils import register_all_modules


def parse_occluders(items):
    """``NAME=WEIGHT`` strings to ``(name, weight)`` pairs."""
    pairs = []
    for item in items:
        name, sep, weight = item.partition('=')
        try:
            pairs.append((name, float(weight)))
        except ValueError:
            sep = ''
        if not sep or not name:
            raise argparse.ArgumentTypeError(
                f'--occluders: expected NAME=WEIGHT (e.g. NiqabOcclusion=0.4), got {item!r}')
    return pairs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--num-train-ids', type=int, default=1000, help='training identities')
    parser.add_argument('--images-per-id', type=int, default=20,
                        help='images per training identity')
    parser.add_argument('--num-test-ids', type=int, default=200,
                        help='verification identities (disjoint from training)')
    parser.add_argument('--test-images-per-id', type=int, default=10,
                        help='images rendered per verification identity')
    parser.add_argument('--num-pairs', type=int, default=3000,
                        help='verification pairs (even; half same, half different)')
    parser.add_argument('--num-occluded-ids', type=int, default=None,
                        help='training identities in the occluded set (default: all)')
    parser.add_argument('--occluded-per-id', type=int, default=4,
                        help='occluded images per identity (0: no occluded set)')
    parser.add_argument('--occluders', nargs='+', default=None, metavar='NAME=WEIGHT',
                        help='occluder mix (default: ' + ' '.join(
                            f'{n}={w:g}' for n, w in DEFAULT_OCCLUDERS) + ')')
    parser.add_argument('--num-holdout-ids', type=int, default=0,
                        help='held-out identities of the training id range for '
                        'val/synthface_holdout.bin, a validation split (default 0: none)')
    parser.add_argument('--num-holdout-pairs', type=int, default=1000,
                        help='pairs of the held-out set (even)')
    parser.add_argument('--image-size', type=int, default=112, help='image size')
    parser.add_argument('--trait-jitter', type=float, default=DEFAULT_TRAIT_JITTER,
                        help='per-image trait variation (SynthFaceGenerator.trait_jitter)')
    parser.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality')
    parser.add_argument('--seed', type=int, default=0, help='data set seed')
    parser.add_argument('--workers', type=int, default=0,
                        help='worker processes (0: render in this process)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    register_all_modules()
    try:
        occluders = (DEFAULT_OCCLUDERS
                     if args.occluders is None else parse_occluders(args.occluders))
    except argparse.ArgumentTypeError as err:
        sys.exit(str(err))
    bar = []

    def progress(count: int, total: int) -> None:
        if not bar:
            bar.append(ProgressBar(total))
        bar[0].update(count)

    start = time.perf_counter()
    meta = write_synthface(
        args.out_dir,
        num_train_ids=args.num_train_ids,
        images_per_id=args.images_per_id,
        num_test_ids=args.num_test_ids,
        num_pairs=args.num_pairs,
        seed=args.seed,
        test_images_per_id=args.test_images_per_id,
        num_occluded_ids=args.num_occluded_ids,
        occluded_per_id=args.occluded_per_id,
        occluders=occluders,
        image_size=args.image_size,
        trait_jitter=args.trait_jitter,
        jpeg_quality=args.jpeg_quality,
        num_holdout_ids=args.num_holdout_ids,
        num_holdout_pairs=args.num_holdout_pairs,
        num_workers=args.workers,
        progress=progress,
        command=' '.join(['python', 'tools/dataset_converters/make_synthface.py'] +
                         [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]))
    elapsed = time.perf_counter() - start
    rendered = bar[0].completed if bar else 0
    print(f'\nwrote {meta["num_train_images"]} training images, {meta["num_pairs"]} pairs and '
          f'{meta["num_occluded_images"]} occluded images to {args.out_dir} in {elapsed:.1f} s '
          f'({rendered / elapsed:.0f} rendered images/s)')


if __name__ == '__main__':
    main()
