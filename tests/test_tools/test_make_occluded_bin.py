"""tools/dataset_converters/make_occluded_bin.py: generate, then regenerate from a log."""
import runpy
import sys
from pathlib import Path

import numpy as np

from mmoaml.fileio import dump_verification_bin, encode_image, load_verification_bin

TOOL = Path(__file__).parents[2] / 'tools' / 'dataset_converters' / 'make_occluded_bin.py'


def _run(monkeypatch, *argv):
    monkeypatch.setattr(sys, 'argv', [str(TOOL), *argv])
    runpy.run_path(str(TOOL), run_name='__main__')


def test_cli_writes_variants_and_regenerates(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    src = str(tmp_path / 'tiny.bin')
    dump_verification_bin(
        src, [encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(4)],
        [True, False])
    out = tmp_path / 'out'
    _run(monkeypatch, src, '--out-dir', str(out), '--protocols', 'clean', 'niqab_probe',
         '--grids', '7x7', '14x14')
    assert 'niqab_probe' in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f'tiny_{name}{suffix}' for name in ('clean', 'niqab_probe')
        for suffix in ('.bin', '_masks.npz', '_masks_7x7.npz', '_masks_14x14.npz', '_log.jsonl'))
    _run(monkeypatch, src, '--out-dir', str(tmp_path / 'again'), '--regenerate',
         str(out / 'tiny_niqab_probe_log.jsonl'))
    assert 'regenerated identically' in capsys.readouterr().out
    assert (load_verification_bin(str(tmp_path / 'again' / 'tiny_niqab_probe.bin'))[0] ==
            load_verification_bin(str(out / 'tiny_niqab_probe.bin'))[0])
