"""Verify two face images with an mmoaml model and draw their visibility maps side by side.

    python demo/verify_pair.py CONFIG CHECKPOINT A.jpg B.jpg [--landmarks L.json] \
        [--threshold T --score-type qaconv] [--out pair.png]

Images are 112x112 aligned crops, or photos with five landmarks each given in a JSON file:
``{"a": [[x, y] x 5] or null, "b": [[x, y] x 5] or null}`` (left eye, right eye, nose tip,
left and right mouth corners, pixels). Prints the scores and the decision as JSON; writes the
two aligned crops tinted by their predicted visibility (green visible, red hidden), or plain
crops for a model without visibility, next to each other.
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np

from mmoaml.apis import SCORE_TYPES, FaceVerifier

GAP = 8  # black pixels between the two crops


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file or shipped config name (oaml_synthface)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image_a')
    parser.add_argument('image_b')
    parser.add_argument('--landmarks', help='JSON file {"a": [[x, y] x 5], "b": ...}')
    parser.add_argument('--threshold', type=float, help='decision threshold')
    parser.add_argument('--score-type', choices=SCORE_TYPES, help='score that decides')
    parser.add_argument('--out', default='pair.png', help='side-by-side PNG (default pair.png)')
    parser.add_argument('--scale', type=int, default=2, help='upscaling of the crops (2)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def read_landmarks(path):
    if path is None:
        return None, None
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict) or set(data) - {'a', 'b'}:
        raise ValueError(f'{path}: expected a JSON object with keys "a" and/or "b"')
    return ([np.asarray(data[k], np.float64)] if data.get(k) is not None else None
            for k in ('a', 'b'))


def main(argv=None):
    args = parse_args(argv)
    landmarks_a, landmarks_b = read_landmarks(args.landmarks)
    verifier = FaceVerifier(args.config, args.checkpoint, device=args.device)
    result = verifier.verify([args.image_a], [args.image_b], landmarks_a, landmarks_b,
                             threshold=args.threshold, score_type=args.score_type)[0]
    print(json.dumps(dict(result, far=verifier.far), indent=2))
    tiles = []
    for image, landmarks in ((args.image_a, landmarks_a), (args.image_b, landmarks_b)):
        try:
            tile = verifier.overlay([image], landmarks)[0]
        except ValueError:  # a model without visibility: the plain aligned crop
            tile = verifier.aligned([image], landmarks)[0]
        tiles.append(cv2.resize(tile, None, fx=args.scale, fy=args.scale,
                                interpolation=cv2.INTER_NEAREST))
    gap = np.zeros((tiles[0].shape[0], GAP, 3), np.uint8)
    canvas = np.concatenate([tiles[0], gap, tiles[1]], axis=1)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, canvas):
        raise OSError(f'cannot write {args.out}')
    print(f'wrote {args.out}', file=sys.stderr)
    return result


if __name__ == '__main__':
    main()
