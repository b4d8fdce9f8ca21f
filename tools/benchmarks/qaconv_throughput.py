"""QAConv pair-scoring throughput on CPU against the machine's matrix-multiply peak.

Scores a ``P x G`` set of 7x7x512 maps with ``QAConvHead.match`` in eval mode (default chunking)
in float32 and bfloat16, with and without visibility maps, plus verification-style aligned pairs
(``match_pairs``, with and without visibility), through the compiled kernels of ``mmoaml.ops``
and, in the rows named ``PyTorch``, through the PyTorch paths (``MMOAML_NATIVE=0``), and
measures in the same run, alternating with the head's cases, the best ``torch.matmul`` rate of
each precision over a few shapes (including the head's own block shape). Useful work per pair
is the correlation, ``2 * 49 * 49 * 512`` FLOPs; normalising the maps, the maxima, BN and fc
are counted as overhead. Two ceilings of the PyTorch aligned-pair path are timed beside it: the
batched products alone (``bmm`` over blocks of already normalised descriptors of the compute
precision) and one read of the float32 input maps (``sum``), which ``match_pairs`` cannot avoid
because each map is used once. Every time is the best of ``--repeats`` rounds after a warm-up
round, each round calling every case in turn, which filters out other load on a shared machine.
The last lines give the throughput with visibility over that without, per precision (``vis``
hides about a fifth of the locations, so the ``'mask'`` exclusion runs; ``vis, 0 hidden`` is the
same visibility with none hidden: the weighting alone), and the kernels' throughput over the
PyTorch paths'.

Example::

    python tools/benchmarks/qaconv_throughput.py --probes 256 --gallery 256 --threads 1
"""
import argparse
import os
import time
from typing import Callable, Dict, List, Tuple

import torch

from mmoaml.models.heads import QAConvHead
from mmoaml.ops import aligned_pairs, axis_maxima

C, H, W = 512, 7, 7
FLOPS_PER_PAIR = 2 * (H * W)**2 * C
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def best_times(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Minimum wall time of each ``fn`` over ``repeats`` rounds that call them in turn, after one
    warm-up round, so that load on a shared machine hits all contenders alike."""
    best = {name: float('inf') for name in fns}
    for round_idx in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_idx:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def matmul_cases(dtype: torch.dtype, shapes: List[Tuple[int, int, int]]
                 ) -> Dict[Tuple[int, int, int], Callable[[], object]]:
    """``[m, k] @ [k, n]`` products of each shape ``(m, n, k)``."""
    cases = {}
    for m, n, k in shapes:
        a = torch.randn(m, k).to(dtype)
        b = torch.randn(k, n).to(dtype)
        cases[(m, n, k)] = lambda a=a, b=b: a @ b
    return cases


def pair_bounds(head: QAConvHead, probe: torch.Tensor, gallery: torch.Tensor,
                dtype: torch.dtype) -> Dict[str, Tuple[int, Callable[[], object]]]:
    """Ceilings of ``match_pairs``: the products alone, and one read of the input maps."""
    step = head._pair_chunk(dtype, probe.device)
    p = torch.nn.functional.normalize(probe.flatten(2), dim=1).to(dtype)
    g = torch.nn.functional.normalize(gallery.flatten(2), dim=1).to(dtype)

    def products():
        for i in range(0, p.shape[0], step):
            torch.bmm(p[i:i + step].transpose(1, 2), g[i:i + step])

    n = probe.shape[0]
    return {'pair products only': (n, products),
            'read fp32 maps once': (n, lambda: (probe.sum(), gallery.sum()))}


def without_kernels(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the compiled kernels switched off (``MMOAML_NATIVE=0``)."""

    def run():
        before = os.environ.get('MMOAML_NATIVE')
        os.environ['MMOAML_NATIVE'] = '0'
        try:
            return fn()
        finally:
            if before is None:
                del os.environ['MMOAML_NATIVE']
            else:
                os.environ['MMOAML_NATIVE'] = before

    return run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--probes', type=int, default=512, help='P (default 512)')
    parser.add_argument('--gallery', type=int, default=512, help='G (default 512)')
    parser.add_argument('--pairs', type=int, default=2000,
                        help='aligned pairs for match_pairs (default 2000)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per case (best kept)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch default)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = QAConvHead(C, H, W).eval()
    probe = torch.randn(args.probes, C, H, W)
    gallery = torch.randn(args.gallery, C, H, W)
    # Soft visibility with about a fifth of the locations hidden, like a thresholded occlusion map.
    probe_vis = torch.rand(args.probes, H * W) * (torch.rand(args.probes, H * W) > 0.2)
    gallery_vis = torch.rand(args.gallery, H * W) * (torch.rand(args.gallery, H * W) > 0.2)
    # The same maps with nothing hidden: the weighting alone, without the exclusion.
    soft = (probe_vis.clamp_min(0.01), gallery_vis.clamp_min(0.01))
    pair_probe = torch.randn(args.pairs, C, H, W)
    pair_gallery = torch.randn(args.pairs, C, H, W)
    pair_probe_vis = torch.rand(args.pairs, H * W) * (torch.rand(args.pairs, H * W) > 0.2)
    pair_gallery_vis = torch.rand(args.pairs, H * W) * (torch.rand(args.pairs, H * W) > 0.2)

    peaks: Dict[str, Tuple[float, Tuple[int, int, int]]] = {}
    rows = []
    seconds_of: Dict[Tuple[str, str], float] = {}
    with torch.inference_mode():
        for name, dtype in PRECISIONS.items():
            p_chunk, g_chunk = head._chunk_sizes(None, dtype, probe.device)
            shapes = [(2048, 2048, 2048), (1568, 1568, 512), (4096, 4096, 512),
                      (p_chunk * H * W, g_chunk * H * W, C)]
            all_pairs = args.probes * args.gallery
            cases = {
                'match, no vis': (all_pairs, lambda: head.match(probe, gallery, dtype=dtype)),
                'match, vis': (all_pairs, lambda: head.match(probe, gallery, probe_vis,
                                                             gallery_vis, dtype=dtype)),
                'match, vis, 0 hidden': (all_pairs,
                                         lambda: head.match(probe, gallery, *soft, dtype=dtype)),
                'match PyTorch, vis': (all_pairs, without_kernels(lambda: head.match(
                    probe, gallery, probe_vis, gallery_vis, dtype=dtype))),
                'match_pairs, no vis': (args.pairs, lambda: head.match_pairs(
                    pair_probe, pair_gallery, dtype=dtype)),
                'match_pairs, vis': (args.pairs, lambda: head.match_pairs(
                    pair_probe, pair_gallery, pair_probe_vis, pair_gallery_vis, dtype=dtype)),
                'pairs PyTorch, no vis': (args.pairs, without_kernels(lambda: head.match_pairs(
                    pair_probe, pair_gallery, dtype=dtype))),
                'pairs PyTorch, vis': (args.pairs, without_kernels(lambda: head.match_pairs(
                    pair_probe, pair_gallery, pair_probe_vis, pair_gallery_vis, dtype=dtype))),
            }
            cases.update(pair_bounds(head, pair_probe, pair_gallery, dtype))
            products = matmul_cases(dtype, shapes)
            # Head cases and the matmul bound alternate round by round, best of each kept.
            times = best_times({**{label: fn for label, (_, fn) in cases.items()},
                                **{str(shape): fn for shape, fn in products.items()}},
                               args.repeats)
            peaks[name] = max((2 * m * n * k / times[str((m, n, k))] / 1e9, (m, n, k))
                              for m, n, k in shapes)
            for label, (pairs, _) in cases.items():
                seconds = times[label]
                seconds_of[(name, label)] = seconds
                rows.append((name, label, f'{p_chunk}x{g_chunk}', pairs / seconds,
                             pairs * FLOPS_PER_PAIR / seconds / 1e9))

    best_peak = max(gflops for gflops, _ in peaks.values())
    print(f'QAConv 7x7x512 eval scoring, P={args.probes}, G={args.gallery}, '
          f'aligned pairs={args.pairs}, threads={torch.get_num_threads()}, '
          f'best of {args.repeats} alternating rounds')
    for name, (gflops, shape) in peaks.items():
        print(f'matmul peak {name}: {gflops:8.1f} GFLOP/s (best shape m,n,k={shape})')
    if None in (aligned_pairs.load_kernel(), axis_maxima.load_kernel()):
        print('note: a compiled kernel is missing here, its rows ran the PyTorch path')
    header = (f'{"precision":<9} {"case":<21} {"chunk PxG":>9} {"pairs/s":>12} '
              f'{"useful GFLOP/s":>15} {"% own peak":>10} {"% best peak":>11}')
    print(header)
    print('-' * len(header))
    for name, label, chunk, pairs_per_s, gflops in rows:
        print(f'{name:<9} {label:<21} {chunk:>9} {pairs_per_s:12.0f} {gflops:15.1f} '
              f'{100 * gflops / peaks[name][0]:9.1f}% {100 * gflops / best_peak:10.1f}%')
    for name in PRECISIONS:
        for call, case in (('match', 'vis'), ('match', 'vis, 0 hidden'), ('match_pairs', 'vis')):
            ratio = seconds_of[(name, f'{call}, no vis')] / seconds_of[(name, f'{call}, {case}')]
            print(f'{name} {call} {case} / no vis throughput: {ratio:.3f}')
        ratio = seconds_of[(name, 'match, no vis')] / seconds_of[(name, 'match PyTorch, vis')]
        print(f'{name} match vis (PyTorch path) / no vis throughput: {ratio:.3f}')
        for case in ('no vis', 'vis'):
            ratio = seconds_of[(name, f'pairs PyTorch, {case}')] / seconds_of[
                (name, f'match_pairs, {case}')]
            print(f'{name} match_pairs {case}: compiled kernel / PyTorch path throughput: '
                  f'{ratio:.2f}')

if __name__ == '__main__':
    main()
