"""Draw an mmoaml model's predicted visibility over a face (green visible, red hidden).

    python demo/visibility.py CONFIG CHECKPOINT FACE.jpg [--landmarks x1 y1 ... x5 y5] \
        [--out visibility.png]

The face is a 112x112 aligned crop, or a photo with its five landmarks (left eye, right eye,
nose tip, left and right mouth corners, pixels) given as ten numbers. Writes the aligned crop
with the overlay, upscaled by ``--scale``.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmoaml.apis import FaceVerifier


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file or shipped config name (oaml_synthface)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image')
    parser.add_argument('--landmarks', type=float, nargs=10, metavar='V',
                        help='x1 y1 ... x5 y5 of the five landmarks')
    parser.add_argument('--out', default='visibility.png', help='PNG (default visibility.png)')
    parser.add_argument('--scale', type=int, default=2, help='upscaling of the crop (2)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    landmarks = None
    if args.landmarks is not None:
        landmarks = [np.asarray(args.landmarks, np.float64).reshape(5, 2)]
    verifier = FaceVerifier(args.config, args.checkpoint, device=args.device)
    visibility = verifier.visibility([args.image], landmarks=landmarks)[0]
    tile = verifier.overlay([args.image], landmarks)[0]
    tile = cv2.resize(tile, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, tile):
        raise OSError(f'cannot write {args.out}')
    print(f'mean predicted visibility {float(visibility.mean()):.3f}; wrote {args.out}',
          file=sys.stderr)
    return visibility


if __name__ == '__main__':
    main()
