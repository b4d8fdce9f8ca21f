"""Evaluation scaling: memory and time of the verification and identification metrics.

Part 1, ``FaceVerificationMetric.compute_metrics`` (AdaFace, QAConv with predicted visibility,
combined) for growing numbers of images of random 512-d embeddings and 512x7x7 maps (stored by
the metric in float16). Each size runs in a fresh process. Columns (MiB): ``stored`` = bytes of
the metric's entries; ``baseline`` = resident memory after the imports; ``before`` = resident
memory right before ``compute_metrics`` (freed heap handed back first); ``peak`` = the peak
during it (the kernel's peak mark is reset first); ``entries`` = before - baseline (what the
stored results occupy); ``extra`` = peak - before (what evaluation adds). Memory grows only with
the stored maps when ``entries`` tracks ``stored`` and ``extra`` does not grow with the set
(bounded blocks, no pair-by-pair or image-by-image matrix).

Part 2, ``FaceIdentificationMetric.compute_metrics``: ``--probes`` probes searched in a
``--gallery`` gallery (synthetic identities: each image is its identity's template plus noise,
in the embedding and in the map; 90 % of the probes mated). Timed twice: QAConv re-ranking of
the AdaFace top-``k`` shortlist alone (``recall_probes=0``), and with the shortlist recall
measured on ``--full-probes`` probes, each scored by QAConv against the whole gallery (for
the recall and the memory). Full QAConv ranking is timed directly on ``--full-probes`` probes
(``QAConvHead.match`` over the whole gallery, in the metric's gallery blocks) and extrapolated
linearly to all probes for the speed-up of the shortlist. Identification timings are the best
of ``--repeats`` runs, which filters out part of the load of a shared machine; rerun to
compare.

Example::

    python tools/benchmarks/eval_scaling.py --sizes 1000 4000 16000 \\
        --probes 1000 --gallery 10000 --k 20 --full-probes 20
"""
import argparse
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from mmoaml.evaluation import FaceIdentificationMetric, FaceVerificationMetric
from mmoaml.models.heads import QAConvHead

C, H, W, D = 512, 7, 7, 512
BATCH = 256
MIB = 2**20


def rss_now() -> int:
    """Current resident set size in bytes (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that the resident size
    measured next holds live data only, not the garbage of generating the inputs."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``; Linux >= 4.0), so the next :func:`rss_peak`
    covers only what follows. Returns False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def rss_peak() -> int:
    """Peak resident set size in bytes: ``VmHWM`` (since :func:`reset_peak`), else the process
    lifetime's ``ru_maxrss``."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stored_bytes(entries) -> int:
    return sum(t.numel() * t.element_size() for e in entries for t in e.values()
               if isinstance(t, torch.Tensor))


def child_verification(num_images: int) -> dict:
    baseline = rss_now()
    torch.manual_seed(0)
    metric = FaceVerificationMetric(score_types=('adaface', 'qaconv', 'combined'))
    metric.bind_matcher(QAConvHead(num_features=C, height=H, width=W).eval())
    for start in range(0, num_images, BATCH):
        n = min(BATCH, num_images - start)
        emb = F.normalize(torch.randn(n, D), dim=1)
        maps = F.normalize(torch.randn(n, C, H, W), dim=1)
        vis = torch.rand(n, 1, H, W)
        metric.process(None, [
            dict(sample_idx=start + i, pair_idx=(start + i) // 2,
                 issame=(start + i) // 2 % 2 == 0, embedding=emb[i], feature_map=maps[i],
                 visibility=vis[i]) for i in range(n)
        ])
    del emb, maps, vis
    stored = stored_bytes(metric.results)
    gc.collect()
    release_free_heap()
    reset_peak()
    before = rss_now()
    tic = time.perf_counter()
    metric.compute_metrics(metric.results)
    elapsed = time.perf_counter() - tic
    return dict(images=num_images, stored=stored, baseline=baseline, before=before,
                peak=rss_peak(), seconds=elapsed)


def synthetic_search(num_probes: int, num_gallery: int, seed: int = 0):
    """Per-image samples of a gallery (2 images per identity) and probes (90 % mated)."""
    g = torch.Generator().manual_seed(seed)
    num_ids = max(1, num_gallery // 2)
    id_emb = torch.randn(num_ids, D, generator=g)
    samples = []

    def add(role, labels):
        for start in range(0, len(labels), BATCH):
            lab = labels[start:start + BATCH]
            # Templates of non-mated identities (label >= num_ids) are drawn fresh.
            known = lab < num_ids
            base_emb = torch.where(known[:, None], id_emb[lab.clamp(max=num_ids - 1)],
                                   torch.randn(len(lab), D, generator=g))
            emb = F.normalize(base_emb + 0.8 * torch.randn(len(lab), D, generator=g), dim=1)
            # Identity template maps from a per-identity generator: no G x 25k table in memory.
            base_map = torch.stack([
                torch.randn(C, H, W, generator=torch.Generator().manual_seed(int(i) + 1))
                for i in lab
            ])
            maps = F.normalize(base_map + 0.8 * torch.randn(base_map.shape, generator=g), dim=1)
            vis = 0.2 + 0.8 * torch.rand(len(lab), 1, H, W, generator=g)
            for i in range(len(lab)):
                samples.append(
                    dict(sample_idx=len(samples), role=role, gt_label=lab[i:i + 1],
                         embedding=emb[i], feature_map=maps[i].half(), visibility=vis[i]))

    add('gallery', torch.arange(num_gallery) // 2)
    mated = torch.rand(num_probes, generator=g) < 0.9
    labels = torch.where(mated, torch.randint(0, num_ids, (num_probes, ), generator=g),
                         num_ids + torch.arange(num_probes))
    add('probe', labels)
    return samples


def full_qaconv_seconds(head: QAConvHead, samples: list, num_probes: int) -> float:
    """Wall time of scoring ``num_probes`` probes against the whole gallery with
    ``QAConvHead.match``, fed in gallery blocks of about 128 MB of float32 maps (as the metric
    does for its shortlist recall)."""
    gallery = [s for s in samples if s['role'] == 'gallery']
    probes = [s for s in samples if s['role'] == 'probe'][:num_probes]
    probe = torch.stack([s['feature_map'] for s in probes])
    probe_vis = torch.stack([s['visibility'] for s in probes])
    step = 128 * MIB // (4 * C * H * W)
    tic = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(gallery), step):
            block = gallery[start:start + step]
            head.match(probe, torch.stack([s['feature_map'] for s in block]), probe_vis,
                       torch.stack([s['visibility'] for s in block]))
    return time.perf_counter() - tic


def child_identification(num_probes: int, num_gallery: int, k: int, full_probes: int,
                         repeats: int) -> dict:
    torch.manual_seed(0)
    head = QAConvHead(num_features=C, height=H, width=W).eval()
    with torch.no_grad():  # warm-up: first-call costs stay out of every timing below
        warm = F.normalize(torch.randn(64, C, H, W), dim=1)
        head.match(warm[:4], warm)
        head.match_pairs(warm, warm)
    runs = {}
    for name, recall in (('shortlist', 0), ('with_recall', full_probes)):
        metric = FaceIdentificationMetric(shortlist_k=k, recall_probes=recall)
        metric.bind_matcher(head)
        # The same seeded data for both runs, held by the entries only, as in an evaluation.
        metric.process(None, synthetic_search(num_probes, num_gallery))
        stored = stored_bytes(metric.results)
        gc.collect()
        release_free_heap()
        reset_peak()
        before = rss_now()
        seconds = []
        # compute_metrics leaves the entries intact, so it can be timed repeatedly.
        for _ in range(repeats):
            tic = time.perf_counter()
            results = metric.compute_metrics(metric.results)
            seconds.append(time.perf_counter() - tic)
        runs[name] = dict(seconds=min(seconds), results=results, before=before,
                          peak=rss_peak())
        metric.results.clear()
    samples = synthetic_search(full_probes, num_gallery)
    full = min(full_qaconv_seconds(head, samples, full_probes) for _ in range(repeats))
    return dict(probes=num_probes, gallery=num_gallery, k=k, full_probes=full_probes,
                stored=stored, runs=runs, full_seconds=full)


def run_child(args) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='*', default=[1000, 4000, 16000],
                        help='numbers of verification images (default 1000 4000 16000)')
    parser.add_argument('--probes', type=int, default=1000, help='probes (default 1000)')
    parser.add_argument('--gallery', type=int, default=10000, help='gallery (default 10000)')
    parser.add_argument('--k', type=int, default=20, help='shortlist length (default 20)')
    parser.add_argument('--full-probes', type=int, default=20,
                        help='probes scored by full QAConv (default 20)')
    parser.add_argument('--repeats', type=int, default=2,
                        help='identification timings: best of this many runs (default 2)')
    parser.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *values = args.child
        values = [int(v) for v in values]
        result = (child_verification(*values)
                  if kind == 'verification' else child_identification(*values))
        print(json.dumps(result))
        return

    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{os.cpu_count()} CPUs')
    if args.sizes:
        print('\nFaceVerificationMetric.compute_metrics (adaface, qaconv, combined; 512x7x7 '
              'fp16 maps)')
        print(f'{"images":>8} {"stored":>8} {"baseline":>9} {"before":>8} {"peak":>8} '
              f'{"entries":>8} {"extra":>8} {"seconds":>8}   (MiB)')
        for n in args.sizes:
            r = run_child(['--child', 'verification', str(n)])
            print(f'{n:8d} {r["stored"] / MIB:8.1f} {r["baseline"] / MIB:9.1f} '
                  f'{r["before"] / MIB:8.1f} {r["peak"] / MIB:8.1f} '
                  f'{(r["before"] - r["baseline"]) / MIB:8.1f} '
                  f'{(r["peak"] - r["before"]) / MIB:8.1f} {r["seconds"]:8.2f}')
    if args.probes and args.gallery:
        r = run_child([
            '--child', 'identification', str(args.probes), str(args.gallery), str(args.k),
            str(args.full_probes), str(args.repeats)
        ])
        short, with_recall = r['runs']['shortlist'], r['runs']['with_recall']
        per_probe = r['full_seconds'] / args.full_probes
        full = per_probe * args.probes
        res = with_recall['results']
        print(f'\nFaceIdentificationMetric.compute_metrics: {args.probes} probes x '
              f'{args.gallery} gallery, shortlist k={args.k} (synthetic identities)')
        for name, run in r['runs'].items():
            print(f'  {name}: stored entries {r["stored"] / MIB:.0f} MiB, RSS before compute '
                  f'{run["before"] / MIB:.0f} MiB, peak during it {run["peak"] / MIB:.0f} MiB '
                  f'(extra {(run["peak"] - run["before"]) / MIB:.0f} MiB), '
                  f'{run["seconds"]:.1f} s')
        print(f'  shortlist path (AdaFace search over the gallery + QAConv on '
              f'{args.probes * args.k} shortlisted pairs): {short["seconds"]:.1f} s')
        rate = args.full_probes * args.gallery / r['full_seconds']
        print(f'  full QAConv, {args.full_probes} probes x {args.gallery} gallery timed: '
              f'{r["full_seconds"]:.1f} s = {rate:.0f} pairs/s; all {args.probes} probes '
              f'({args.probes * args.gallery} pairs) extrapolated: {full:.0f} s')
        rate = args.probes * args.k / short['seconds']
        print(f'  shortlist path throughput: {rate:.0f} shortlisted pairs/s')
        print(f'  speed-up of the shortlist over full QAConv ranking: '
              f'{full / short["seconds"]:.0f}x')
        print(f'  shortlist recall (full-QAConv top-1 in the AdaFace top-{args.k}) on '
              f'{res["qaconv/recall_probes"]} probes: {res["qaconv/shortlist_recall"]:.3f}')
        for key in ('adaface/rank-1', 'qaconv/rank-1', 'combined/rank-1',
                    'adaface/tpir@fpir=0.01', 'qaconv/tpir@fpir=0.01'):
            print(f'  {key}: {res[key]:.3f}')


if __name__ == '__main__':
    main()
