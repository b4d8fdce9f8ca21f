"""Predicted against true visibility of a trained model's occlusion head, occluder style by style.

    python tools/analysis_tools/visibility_by_style.py CONFIG CKPT FACES.bin \\
        [--occluders NiqabOcclusion ...] [--styles train val test each] [--num-faces 400]

Draws each occluder on the first ``--num-faces`` faces of a verification ``.bin`` (aligned
112x112 crops, e.g. SynthFace's ``val/synthface_holdout.bin``), every image covered
(``prob=1``), one seeded draw per face, and compares the model's predicted visibility with the
drawn pixel mask area-averaged to the head's grid. ``--styles`` names style groups
(``train``, ``val``, ``test`` as the occluders' ``styles`` argument) or ``each`` (every style on
its own). Rows: occluder, styles, faces, mean predicted and true visibility, MSE, IoU of the
hidden cells (``mmoaml.evaluation.functional.visibility_summary``). Choose training options on
``val`` styles (neither trained on nor tested); ``test`` styles are what the benchmarks draw.
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmoaml.apis import FaceVerifier
from mmoaml.evaluation.functional import visibility_summary
from mmoaml.fileio import decode_image, load_verification_bin
from mmoaml.registry import TRANSFORMS
from mmoaml.structures import area_downsample
from mmoaml.utils import register_all_modules

GROUPS = ('train', 'val', 'test')
DEFAULT_OCCLUDERS = ('NiqabOcclusion', 'MedicalMaskOcclusion', 'SunglassesOcclusion')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='model config (path or shipped name)')
    parser.add_argument('checkpoint', help='trained weights with an occlusion head')
    parser.add_argument('faces', help='verification .bin of aligned face crops')
    parser.add_argument('--occluders', nargs='+', default=list(DEFAULT_OCCLUDERS),
                        help=f'occluder types (default: {" ".join(DEFAULT_OCCLUDERS)})')
    parser.add_argument('--styles', nargs='+', default=['train', 'val', 'test'],
                        choices=GROUPS + ('each', ), help='style groups (default: train val test)')
    parser.add_argument('--num-faces', type=int, default=400, help='faces used (default 400)')
    parser.add_argument('--seed', type=int, default=0, help='occluder seed (default 0)')
    parser.add_argument('--device', default='cpu', help='device (default cpu)')
    parser.add_argument('--out', help='also write the rows to this JSON file')
    args = parser.parse_args(argv)
    if args.num_faces < 1:
        parser.error(f'--num-faces must be >= 1, got {args.num_faces}')
    return args


def style_cases(occluder: str, groups: Sequence[str]) -> List[Tuple[str, object]]:
    """``(label, styles argument)`` per row of ``occluder``; groups without styles are left out
    (e.g. ``val`` of an occluder that defines no validation styles)."""
    cls = TRANSFORMS.get(occluder)
    if cls is None or not hasattr(cls, 'STYLES'):
        raise SystemExit(f'--occluders: {occluder!r} is not a registered occluder')
    cases: List[Tuple[str, object]] = []
    for group in groups:
        if group == 'each':
            cases += [(name, [name]) for name in cls.STYLES]
        elif _group_names(cls, group):
            cases.append((group, group))
    return cases


def _group_names(cls, group: str) -> Tuple[str, ...]:
    try:
        return cls(styles=group).styles
    except ValueError:  # the group selects no style of this occluder
        return ()


def occlude(faces: Sequence[np.ndarray], occluder: str, styles, seed: int):
    """The faces with one ``occluder`` each and their ``[N, 1, H, W]`` pixel visibility."""
    transform = TRANSFORMS.build(dict(type=occluder, prob=1.0, styles=styles, seed=seed))
    images, masks = [], []
    for i, face in enumerate(faces):
        out = transform(dict(img=face, sample_idx=i))
        images.append(out['img'])
        masks.append(np.asarray(out['visibility_mask'], np.float32))
    return np.stack(images), torch.from_numpy(np.stack(masks))[:, None]


def visibility_rows(verifier: FaceVerifier, faces: Sequence[np.ndarray],
                    occluders: Sequence[str], groups: Sequence[str], seed: int) -> List[Dict]:
    """One row per occluder and style case: ``visibility_summary`` of predicted vs true maps."""
    rows = []
    for occluder in occluders:
        for label, styles in style_cases(occluder, groups):
            images, masks = occlude(faces, occluder, styles, seed)
            pred = torch.from_numpy(verifier.visibility(images))[:, None]
            gt = area_downsample(masks, tuple(pred.shape[-2:]))
            rows.append(dict(occluder=occluder, styles=label, faces=len(faces),
                             **visibility_summary(pred, gt)))
    return rows


def format_rows(rows: Sequence[Dict]) -> str:
    lines = [f'{"occluder":22s} {"styles":18s} {"faces":>5s} {"pred":>6s} {"true":>6s} '
             f'{"MSE":>7s} {"IoU hid":>7s}']
    for r in rows:
        lines.append(f'{r["occluder"]:22s} {r["styles"]:18s} {r["faces"]:5d} '
                     f'{r["mean_pred"]:6.3f} {r["mean_gt"]:6.3f} {r["mse"]:7.4f} '
                     f'{r["iou_hidden"]:7.3f}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    register_all_modules()
    verifier = FaceVerifier(args.config, args.checkpoint, device=args.device)
    encoded, _ = load_verification_bin(args.faces)
    faces = [decode_image(buf, f'{args.faces}[{i}]')
             for i, buf in enumerate(encoded[:args.num_faces])]
    rows = visibility_rows(verifier, faces, args.occluders, args.styles, args.seed)
    print(format_rows(rows))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
