"""Images per second per CPU core of mmoaml's face transforms at 112x112.

Runs each transform (and the full training pipeline: occluder + augmenter + pack) on one thread
(torch and OpenCV limited to one thread) and prints a table. ``img/s per core`` divides by the
process CPU time, so it is meaningful on a shared machine; ``img/s wall`` divides by elapsed time.

    python tools/benchmarks/transform_throughput.py [--num-images 3000] [--size 112]

Target (design brief): >= 1,000 images/s per core for every occluder at 112x112.
"""
import argparse
import time

import cv2
import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

import mmoaml.datasets  # noqa: F401  (registers the transforms)
from mmoaml.registry import TRANSFORMS

TARGET = 1000.0

CASES = {
    'MedicalMaskOcclusion (prob 1)': [dict(type='MedicalMaskOcclusion', prob=1.0, styles='all')],
    'NiqabOcclusion (prob 1)': [dict(type='NiqabOcclusion', prob=1.0, styles='all')],
    'SunglassesOcclusion (prob 1)': [dict(type='SunglassesOcclusion', prob=1.0, styles='all')],
    'RandomOcclusion (prob 1)': [dict(type='RandomOcclusion', prob=1.0, styles='all')],
    'FaceAugmenter (defaults)': [dict(type='FaceAugmenter')],
    'FaceAugmenter (every step)': [
        dict(type='FaceAugmenter', crop_prob=1.0, lowres_prob=1.0, photometric_prob=1.0,
             flip_prob=1.0)
    ],
    'PackFaceInputs': [dict(type='PackFaceInputs')],
    'train pipeline: mask 0.5 + augmenter + pack': [
        dict(type='MedicalMaskOcclusion', prob=0.5),
        dict(type='FaceAugmenter'),
        dict(type='PackFaceInputs')
    ],
    'occlusion batch: niqab + augmenter + pack': [
        dict(type='NiqabOcclusion'),
        dict(type='FaceAugmenter'),
        dict(type='PackFaceInputs')
    ],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=3000, help='timed calls per case')
    parser.add_argument('--size', type=int, default=112, help='square image side')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def synthetic_faces(n: int, size: int, seed: int) -> list:
    """Smooth random BGR images (photo-like statistics, so resizes and jitter do real work)."""
    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        faces.append(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    return faces


def measure(pipeline, faces: list, num_images: int) -> tuple:
    """``(images per CPU second, images per wall second)`` over ``num_images`` calls."""
    for k in range(50):
        pipeline(dict(img=faces[k % len(faces)], gt_label=k, sample_idx=k))
    wall, cpu = time.perf_counter(), time.process_time()
    for k in range(num_images):
        pipeline(dict(img=faces[k % len(faces)], gt_label=k, sample_idx=k))
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return num_images / cpu, num_images / wall


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(args.seed)
    faces = synthetic_faces(64, args.size, args.seed)
    rows = []
    with DefaultScope.overwrite_default_scope('mmoaml'):
        for name, cfgs in CASES.items():
            pipeline = Compose([TRANSFORMS.build(cfg) for cfg in cfgs])
            per_core, per_wall = measure(pipeline, faces, args.num_images)
            rows.append((name, per_core, per_wall))
    width = max(len(r[0]) for r in rows)
    print(f'{args.size}x{args.size}, {args.num_images} images per case, 1 thread '
          f'(torch {torch.get_num_threads()}, cv2 {cv2.getNumThreads()})')
    print(f'{"transform":<{width}}  {"img/s per core":>14}  {"img/s wall":>10}  target')
    for name, per_core, per_wall in rows:
        occluder = 'Occlusion (' in name
        verdict = ('ok' if per_core >= TARGET else 'BELOW') if occluder else ''
        print(f'{name:<{width}}  {per_core:>14.0f}  {per_wall:>10.0f}  {verdict}')


if __name__ == '__main__':
    main()
