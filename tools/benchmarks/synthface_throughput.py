"""SynthFace rendering throughput on one CPU core.

Renders ``--identities x --images`` faces with ``SynthFaceGenerator`` (every nuisance factor
on, as the data set draws them) with OpenCV and PyTorch limited to one thread, and prints
images per second for three stages: rendering alone, rendering plus the JPEG encoding the
writer does, and ``SynthFaceDataset`` samples (render + data-info handling). Each figure is
the best of ``--repeats`` runs, which filters out other load on a shared machine.

Example::

    python tools/benchmarks/synthface_throughput.py --identities 50 --images 10 --repeats 3
"""
import argparse
import time
from typing import Callable

import cv2
import torch

from mmoaml.datagen import SynthFaceGenerator, nuisance_rng
from mmoaml.datasets import SynthFaceDataset
from mmoaml.fileio.image import encode_image


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Best images/s of ``fn`` (which returns the number of images it made) after a warm-up."""
    fn()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--identities', type=int, default=50, help='identities (default 50)')
    parser.add_argument('--images', type=int, default=10, help='images per identity (default 10)')
    parser.add_argument('--image-size', type=int, default=112, help='image size (default 112)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs (best kept)')
    parser.add_argument('--seed', type=int, default=0, help='generator seed')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    gen = SynthFaceGenerator(seed=args.seed, image_size=args.image_size)
    traits = [gen.identity_traits(j) for j in range(args.identities)]

    def render() -> int:
        for j, tr in enumerate(traits):
            for k in range(args.images):
                gen.render(tr, nuisance_rng(args.seed, j, k))
        return len(traits) * args.images

    def render_encode() -> int:
        for j, tr in enumerate(traits):
            for k in range(args.images):
                encode_image(gen.render(tr, nuisance_rng(args.seed, j, k)), '.jpg', 95)
        return len(traits) * args.images

    dataset = SynthFaceDataset(
        num_identities=args.identities,
        images_per_identity=args.images,
        seed=args.seed,
        image_size=args.image_size)

    def samples() -> int:
        for i in range(len(dataset)):
            dataset[i]
        return len(dataset)

    n = args.identities * args.images
    print(f'SynthFace {args.image_size}x{args.image_size}, {n} images per run, 1 thread, '
          f'best of {args.repeats}:')
    print(f'  render                 {best_rate(render, args.repeats):8.1f} images/s')
    print(f'  render + JPEG encode   {best_rate(render_encode, args.repeats):8.1f} images/s')
    print(f'  SynthFaceDataset[i]    {best_rate(samples, args.repeats):8.1f} images/s')


if __name__ == '__main__':
    main()
