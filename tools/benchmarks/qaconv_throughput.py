"""QAConv pair-scoring throughput on CPU against the machine's matrix-multiply peak.

Scores a ``P x G`` set of 7x7x512 maps with ``QAConvHead.match`` in eval mode (default chunking)
in float32 and bfloat16, with and without visibility maps, plus verification-style aligned pairs
(``match_pairs``), and measures in the same run the best ``torch.matmul`` rate of each
precision over a few shapes (including the head's own block shape). Useful work per pair is the
correlation, ``2 * 49 * 49 * 512`` FLOPs; the maxima, BN and fc are counted as overhead. Every
time is the best of ``--repeats`` runs after a warm-up, which filters out other load on a shared
machine. Aligned pairs are bound by reading and normalising the maps (each map is used once),
not by the correlation.

Example::

    python tools/benchmarks/qaconv_throughput.py --probes 512 --gallery 512 --repeats 3
"""
import argparse
import time
from typing import Callable, Dict, List, Tuple

import torch

from mmoaml.models.heads import QAConvHead

C, H, W = 512, 7, 7
FLOPS_PER_PAIR = 2 * (H * W)**2 * C
PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(dtype: torch.dtype, shapes: List[Tuple[int, int, int]],
                repeats: int) -> Tuple[float, Tuple[int, int, int]]:
    """Best GFLOP/s of ``[m, k] @ [k, n]`` over ``shapes``."""
    best = (0.0, shapes[0])
    for m, n, k in shapes:
        a = torch.randn(m, k).to(dtype)
        b = torch.randn(k, n).to(dtype)
        gflops = 2 * m * n * k / best_time(lambda: a @ b, repeats) / 1e9
        best = max(best, (gflops, (m, n, k)))
    return best


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
    pair_probe = torch.randn(args.pairs, C, H, W)
    pair_gallery = torch.randn(args.pairs, C, H, W)

    peaks: Dict[str, Tuple[float, Tuple[int, int, int]]] = {}
    rows = []
    with torch.inference_mode():
        for name, dtype in PRECISIONS.items():
            p_chunk, g_chunk = head._chunk_sizes(None, dtype, probe.device)
            shapes = [(2048, 2048, 2048), (1568, 1568, 512), (4096, 4096, 512),
                      (p_chunk * H * W, g_chunk * H * W, C)]
            peaks[name] = matmul_peak(dtype, shapes, args.repeats)
            cases = [
                ('match, no vis', args.probes * args.gallery,
                 lambda: head.match(probe, gallery, dtype=dtype)),
                ('match, vis', args.probes * args.gallery,
                 lambda: head.match(probe, gallery, probe_vis, gallery_vis, dtype=dtype)),
                ('match_pairs, no vis', args.pairs,
                 lambda: head.match_pairs(pair_probe, pair_gallery, dtype=dtype)),
            ]
            for label, pairs, fn in cases:
                seconds = best_time(fn, args.repeats)
                rows.append((name, label, f'{p_chunk}x{g_chunk}', pairs / seconds,
                             pairs * FLOPS_PER_PAIR / seconds / 1e9))
            # Measured again afterwards, keeping the better, so that a burst of other load on
            # a shared machine during the first measurement does not inflate the ratios.
            peaks[name] = max(peaks[name], matmul_peak(dtype, shapes, args.repeats))

    best_peak = max(gflops for gflops, _ in peaks.values())
    print(f'QAConv 7x7x512 eval scoring, P={args.probes}, G={args.gallery}, '
          f'aligned pairs={args.pairs}, threads={torch.get_num_threads()}, '
          f'best of {args.repeats}')
    for name, (gflops, shape) in peaks.items():
        print(f'matmul peak {name}: {gflops:8.1f} GFLOP/s (best shape m,n,k={shape})')
    header = (f'{"precision":<9} {"case":<20} {"chunk PxG":>9} {"pairs/s":>12} '
              f'{"useful GFLOP/s":>15} {"% own peak":>10} {"% best peak":>11}')
    print(header)
    print('-' * len(header))
    for name, label, chunk, pairs_per_s, gflops in rows:
        print(f'{name:<9} {label:<20} {chunk:>9} {pairs_per_s:12.0f} {gflops:15.1f} '
              f'{100 * gflops / peaks[name][0]:9.1f}% {100 * gflops / best_peak:10.1f}%')


if __name__ == '__main__':
    main()
