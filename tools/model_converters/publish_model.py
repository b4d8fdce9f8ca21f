"""Strip a training checkpoint to its weights for sharing, named by its SHA-256.

    python tools/model_converters/publish_model.py work_dirs/oaml_ir50/epoch_28.pth oaml_ir50.pth
    # -> oaml_ir50-<first 8 hex digits of the file's sha256>.pth

The published file holds only ``meta`` (epoch, iteration, config text, seed, ...; numpy values
turned into Python numbers) and ``state_dict``: no optimizer, scheduler or message-hub state.
It loads with plain ``torch.load`` defaults (weights only), so users need no opt-in and no
trust (``mmoaml.fileio.strip_to_weights`` checks that before returning). The input is read with
mmoaml's safe loader: MMEngine training checkpoints load as they are; a file that needs more
(e.g. custom objects in ``meta``) is refused unless ``--trust`` is given, which fully unpickles
it and can run code stored in it, so only for files of trusted origin. Like MMPretrain's
``publish_model.py``, the output name gets ``-<sha256[:8]>`` before ``.pth``.

``--threshold-json FILE`` (the ``verification_threshold.json`` that ``tools/test.py`` writes
into its work dir) stores the operating point with the weights: ``meta['verification_threshold']``
(score type -> float; "same" iff ``score > threshold``), ``meta['verification_far']``, the
FAR they were chosen at, and ``meta['verification_score_stats']`` when present (the score
statistics that make the ``combined`` threshold usable for single pairs). The rest of the file
is not copied.
"""
import argparse
import hashlib
import json
import math
import os
import os.path as osp
from typing import Any, Dict, Optional

import torch

from mmoaml.fileio import UnsafeCheckpointError, strip_to_weights

#: Hex digits of the SHA-256 put into the file name (MMPretrain / MMEngine convention).
SHA_PREFIX_LEN = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Strip a checkpoint to weights for sharing')
    parser.add_argument('in_file', help='training checkpoint (.pth)')
    parser.add_argument('out_file', help='output name; "-<sha256[:8]>.pth" replaces ".pth"')
    parser.add_argument(
        '--trust',
        action='store_true',
        help='fully unpickle the input if the safe loader refuses it; can run code stored in '
        'the file, so only for files of trusted origin')
    parser.add_argument(
        '--threshold-json',
        metavar='FILE',
        help='verification_threshold.json of tools/test.py: store its verification_threshold '
        'and verification_far in the published meta')
    return parser.parse_args()


def read_threshold_json(path: str) -> Dict[str, Any]:
    """``verification_threshold`` and ``verification_far`` of a ``tools/test.py`` threshold
    file, checked: a non-empty dict of finite floats by score type, and a FAR in ``(0, 1]``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f'{path}: unreadable threshold file ({error})') from error
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object, got {type(data).__name__}')
    thresholds, far = data.get('verification_threshold'), data.get('verification_far')
    if not isinstance(thresholds, dict) or not thresholds or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) for k, v in thresholds.items()):
        raise ValueError(f'{path}: "verification_threshold" must map score types to finite '
                         f'numbers, got {thresholds!r}')
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 < far <= 1:
        raise ValueError(f'{path}: "verification_far" must lie in (0, 1], got {far!r}')
    point = dict(verification_threshold={k: float(v) for k, v in thresholds.items()},
                 verification_far=float(far))
    stats = data.get('verification_score_stats')
    if stats is not None:  # optional: the frozen z-scores of the combined threshold
        if not isinstance(stats, dict) or not all(
                isinstance(v, dict) and set(v) == {'mean', 'std'} and all(
                    isinstance(x, (int, float)) and math.isfinite(x) for x in v.values())
                for v in stats.values()):
            raise ValueError(f'{path}: "verification_score_stats" must map score types to '
                             f'{{"mean": float, "std": float}}, got {stats!r}')
        point['verification_score_stats'] = {
            k: dict(mean=float(v['mean']), std=float(v['std'])) for k, v in stats.items()}
    return point


def sha256_of(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def publish(in_file: str,
            out_file: str,
            trust: bool = False,
            threshold_json: Optional[str] = None) -> str:
    """Write the weights-only copy of ``in_file`` and return its final, hash-named path.

    Args:
        in_file (str): Training checkpoint with a ``state_dict``.
        out_file (str): Output path; ``.pth`` (if present) is replaced by ``-<sha8>.pth``.
        trust (bool): Fully unpickle ``in_file`` if the safe loader refuses it.
            Defaults to False.
        threshold_json (str, optional): A ``tools/test.py`` threshold file whose
            ``verification_threshold`` and ``verification_far`` go into ``meta``. Defaults to
            None.

    Returns:
        str: Path of the published file.
    """
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    tmp_file = f'{stem}.publishing.pth'
    operating_point = None if threshold_json is None else read_threshold_json(threshold_json)
    try:
        stripped = strip_to_weights(in_file, tmp_file, trusted=trust)
    except UnsafeCheckpointError as err:
        raise SystemExit(f'{err}\nFor this tool: re-run with --trust if the file comes from a '
                         'source you trust.') from None
    if operating_point is not None:
        stripped['meta'].update(operating_point)
        torch.save(stripped, tmp_file)
        torch.load(tmp_file, map_location='cpu', weights_only=True)  # still plain data
    final_file = f'{stem}-{sha256_of(tmp_file)[:SHA_PREFIX_LEN]}.pth'
    os.replace(tmp_file, final_file)
    return final_file


def main() -> None:
    args = parse_args()
    final_file = publish(args.in_file, args.out_file, args.trust, args.threshold_json)
    size_mb = osp.getsize(final_file) / 2**20
    print(f'published {final_file} ({size_mb:.1f} MiB, weights only)')


if __name__ == '__main__':
    main()
