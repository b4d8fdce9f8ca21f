"""Export an OAML checkpoint to one ONNX graph (raw BGR images -> embedding, norm, maps).

    python tools/deployment/pytorch2onnx.py configs/oaml_synthface.py \\
        work_dirs/oaml_synthface/epoch_7.pth --out oaml.onnx --qaconv-params oaml_qaconv.npz \\
        --check

The graph (``mmoaml.deployment.OAMLExportWrapper``) takes float32 ``images`` ``[B, 3, H, W]``
holding the raw decoded pixels (BGR, 0..255); the config's data preprocessor (optional RGB swap,
``(x - mean) / std``) runs inside it. Outputs: ``embedding`` (unit, of the image as given: flip
fusion is two calls and a sum of ``embedding * norm``), ``norm``, ``feature_map`` (every location
L2-normalised) and, when the model has an occlusion head, ``visibility``. The batch axis is
dynamic. ``--qaconv-params`` writes the QAConv head's parameters for
``mmoaml.deployment.qaconv_scores`` / ``qaconv_pair_scores`` (QAConv scoring in NumPy).
``--check`` runs ONNX Runtime and PyTorch on the same random images at batch sizes ``--batch``
and ``--batch + 2`` and prints the largest absolute difference of each output.

The checkpoint is loaded weights-only and strictly: missing, unexpected or mis-shaped keys and
NaN/inf weights are an error (``mmoaml.fileio.load_model_state``). See docs/deployment.md.
"""
import argparse
import sys
from typing import Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmoaml.deployment import export_onnx, onnx_runtime_parity, qaconv_params, save_qaconv_params
from mmoaml.fileio import checkpoint_state_dict, load_checkpoint_file, load_model_state
from mmoaml.registry import MODELS
from mmoaml.utils import register_all_modules


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an OAML model to ONNX')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file (weights are loaded strictly)')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the example input (the batch axis stays dynamic; '
                        'default 1)')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='image size (default: the backbone\'s input_size; required for '
                        'backbones without one, e.g. mmpretrain\'s ResNet)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--qaconv-params', metavar='NPZ',
                        help='also write the QAConv head\'s parameters to this .npz '
                        '(mmoaml.deployment.load_qaconv_params)')
    parser.add_argument('--check', action='store_true',
                        help='compare ONNX Runtime with PyTorch on random images at two batch '
                        'sizes and print the max abs difference per output')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='with --check: fail when a difference exceeds this (default 1e-4)')
    parser.add_argument('--dynamo', action='store_true',
                        help='use torch\'s dynamo-based exporter (needs onnxscript) instead of '
                        'the TorchScript one')
    return parser.parse_args(argv)


def build_model(config: str, checkpoint: str) -> torch.nn.Module:
    """The config's model on the CPU in eval mode, with the checkpoint's weights (strict)."""
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmoaml'))
    model = MODELS.build(cfg.model)
    loaded = load_checkpoint_file(checkpoint, map_location='cpu')
    state_dict = checkpoint_state_dict(loaded, checkpoint)
    load_model_state(model, state_dict, checkpoint, strict=True)
    return model.cpu().eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.batch < 1:
        raise SystemExit(f'--batch must be >= 1, got {args.batch}')
    register_all_modules(init_default_scope=False)
    model = build_model(args.config, args.checkpoint)
    head = getattr(model, 'qaconv_head', None)
    if args.qaconv_params and head is None:
        raise SystemExit('--qaconv-params: the model has no qaconv_head')
    graph = export_onnx(model, args.out, batch=args.batch, opset=args.opset, dynamo=args.dynamo,
                        input_size=args.input_size)
    print(f'wrote {args.out}: input images [B, 3, {graph.input_size[0]}, '
          f'{graph.input_size[1]}] (raw BGR 0..255), outputs {", ".join(graph.output_names)}')
    if args.qaconv_params:
        save_qaconv_params(args.qaconv_params, qaconv_params(head))
        weighted = bool(getattr(model, 'visibility_weighting', False))
        print(f'wrote {args.qaconv_params}: QAConv parameters ({head.num_features} x '
              f'{head.height} x {head.width}, weighting {head.weighting!r}); the model '
              f'{"weights" if weighted else "does not weight"} QAConv by predicted visibility')
    if not args.check:
        return 0
    parity = onnx_runtime_parity(graph, args.out, batch_sizes=(args.batch, args.batch + 2))
    worst = 0.0
    for batch, diffs in parity.items():
        print(f'check batch {batch}: max |onnxruntime - torch| ' +
              ', '.join(f'{name} {diff:.3g}' for name, diff in diffs.items()))
        worst = max([worst, *diffs.values()])
    if worst > args.tolerance:
        print(f'check FAILED: {worst:.3g} > {args.tolerance:g}', file=sys.stderr)
        return 1
    print(f'check passed: every difference <= {args.tolerance:g}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
