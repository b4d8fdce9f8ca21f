"""Convert a released AdaFace Lightning checkpoint (.ckpt) into an mmoaml checkpoint.

    python tools/model_converters/adaface_to_mmoaml.py adaface_ir50_casia.ckpt ir50.pth
    python tools/model_converters/adaface_to_mmoaml.py adaface_ir50_casia.ckpt ir50.pth --trust

The output ``{'meta': {...}, 'state_dict': {...}}`` holds ``backbone.*``, ``neck.*`` and
``adaface_head.*`` keys of mmoaml's ``OAML`` model (``head.t``, an unused AdaFace buffer, is
dropped) and loads with plain ``torch.load`` (weights only). ``meta['arch']`` gives the config
values the weights need (depth, se, neck sizes, number of classes).

The input is read weights-only (mmoaml.fileio.load_checkpoint_file). Lightning checkpoints
usually also pickle their hyper-parameters and callback state, which weights-only loading
refuses; ``--trust`` loads them fully, which can run code stored in the file, so use it only
for files from a source you trust (e.g. the official AdaFace release).
"""
import argparse
import os
import os.path as osp
from typing import Dict

import torch

from mmoaml.fileio import (UnsafeCheckpointError, convert_adaface_state_dict, describe_adaface_arch,
                           load_checkpoint_file)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert an AdaFace .ckpt to mmoaml')
    parser.add_argument('src', help='AdaFace Lightning checkpoint (.ckpt)')
    parser.add_argument('dst', help='output mmoaml checkpoint (.pth)')
    parser.add_argument(
        '--trust',
        action='store_true',
        help='fully unpickle the input (it may hold Lightning objects); can run code stored in '
        'the file, so only for files of trusted origin')
    return parser.parse_args()


def convert(src: str, dst: str, trust: bool = False) -> Dict[str, object]:
    """Convert ``src`` to ``dst`` and return the written ``meta``."""
    try:
        checkpoint = load_checkpoint_file(src, map_location='cpu', trusted=trust)
    except UnsafeCheckpointError as err:
        raise SystemExit(f'{err}\nFor this converter: re-run with --trust if the file comes '
                         'from a source you trust (e.g. the official AdaFace release).') from None
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise SystemExit(f'{src}: expected a Lightning checkpoint dict with a "state_dict"')
    state_dict = convert_adaface_state_dict(checkpoint['state_dict'])
    meta = dict(
        source=osp.basename(src),
        converter='tools/model_converters/adaface_to_mmoaml.py',
        arch=describe_adaface_arch(state_dict),
        input_channel_order='BGR')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save({'meta': meta, 'state_dict': state_dict}, dst)
    return meta


def main() -> None:
    args = parse_args()
    meta = convert(args.src, args.dst, args.trust)
    print(f'wrote {args.dst}: {meta["arch"]} (head.t dropped: unused)')


if __name__ == '__main__':
    main()
