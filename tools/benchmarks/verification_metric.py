"""FaceVerificationMetric on an LFW-sized synthetic set: time and memory of process/evaluate.

Feeds ``--pairs`` pairs of random flip-fused embeddings (512-d), 512x7x7 per-location unit maps
and predicted visibility maps through ``process`` in batches, as the Evaluator would, then
``evaluate`` (single process) with a freshly initialised ``QAConvHead``. Prints the wall time of
both phases, the bytes held by the stored entries, and the process's peak resident memory
before and after evaluation (its growth is what evaluation itself adds on top of the entries).

Example::

    python tools/benchmarks/verification_metric.py --pairs 6000
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F

from mmoaml.evaluation import FaceVerificationMetric
from mmoaml.models.heads import QAConvHead

C, H, W, D = 512, 7, 7, 512


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pairs', type=int, default=6000, help='pairs (default 6000, LFW)')
    parser.add_argument('--batch', type=int, default=256, help='images per process() call')
    parser.add_argument('--score-types', nargs='+', default=['adaface', 'qaconv', 'combined'])
    args = parser.parse_args()

    torch.manual_seed(0)
    metric = FaceVerificationMetric(score_types=args.score_types)
    metric.dataset_meta = dict(name='synthetic')
    metric.bind_matcher(QAConvHead(num_features=C, height=H, width=W).eval())
    num_images = 2 * args.pairs
    process_time = 0.0
    for start in range(0, num_images, args.batch):
        n = min(args.batch, num_images - start)
        embedding = F.normalize(torch.randn(n, D), dim=1)
        maps = F.normalize(torch.randn(n, C, H, W), dim=1)
        vis = torch.rand(n, 1, H, W)
        samples = [
            dict(sample_idx=start + i, pair_idx=(start + i) // 2, issame=(start + i) // 2 % 2 == 0,
                 embedding=embedding[i], feature_map=maps[i], visibility=vis[i])
            for i in range(n)
        ]
        tic = time.perf_counter()
        metric.process(None, samples)
        process_time += time.perf_counter() - tic
    stored = sum(t.numel() * t.element_size() for e in metric.results for t in e.values()
                 if isinstance(t, torch.Tensor))
    rss_before = peak_rss_mb()
    tic = time.perf_counter()
    results = metric.evaluate(num_images)
    evaluate_time = time.perf_counter() - tic
    print(f'{args.pairs} pairs, {num_images} images, score types {args.score_types}')
    print(f'process:  {process_time:.2f} s, stored entries {stored / 2**20:.0f} MiB')
    print(f'evaluate: {evaluate_time:.2f} s, peak RSS {rss_before:.0f} -> {peak_rss_mb():.0f} MiB')
    for key in sorted(results):
        if key.endswith(('/accuracy', '/auc')):
            print(f'  {key}: {results[key]:.4f}')


if __name__ == '__main__':
    main()
