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
"""
import argparse
import hashlib
import os
import os.path as osp

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
    return parser.parse_args()


def sha256_of(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def publish(in_file: str, out_file: str, trust: bool = False) -> str:
    """Write the weights-only copy of ``in_file`` and return its final, hash-named path.

    Args:
        in_file (str): Training checkpoint with a ``state_dict``.
        out_file (str): Output path; ``.pth`` (if present) is replaced by ``-<sha8>.pth``.
        trust (bool): Fully unpickle ``in_file`` if the safe loader refuses it.
            Defaults to False.

    Returns:
        str: Path of the published file.
    """
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    tmp_file = f'{stem}.publishing.pth'
    try:
        strip_to_weights(in_file, tmp_file, trusted=trust)
    except UnsafeCheckpointError as err:
        raise SystemExit(f'{err}\nFor this tool: re-run with --trust if the file comes from a '
                         'source you trust.') from None
    final_file = f'{stem}-{sha256_of(tmp_file)[:SHA_PREFIX_LEN]}.pth'
    os.replace(tmp_file, final_file)
    return final_file


def main() -> None:
    args = parse_args()
    final_file = publish(args.in_file, args.out_file, args.trust)
    size_mb = osp.getsize(final_file) / 2**20
    print(f'published {final_file} ({size_mb:.1f} MiB, weights only)')


if __name__ == '__main__':
    main()
