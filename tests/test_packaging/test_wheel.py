"""The wheel carries the configs and tools in ``mmoaml/.mim`` (as OpenMMLab packages do), so an
installed mmoaml loads its configs from outside the repository.

The wheel is built from a copy of the checkout (the build writes ``mmoaml/.mim`` next to the
sources it packs, which must not appear in the working tree) and installed without dependencies
into a fresh venv that sees this environment's packages through a ``.pth`` path entry (the
dependencies live in the project's venv, not in the base interpreter); the checks run from a
directory outside the repository with ``PYTHONPATH`` unset.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP = ('.git', '.venv', 'work_dirs', 'data', 'build', 'dist', '.mim', '__pycache__',
        '*.egg-info', '.pytest_cache', '.dist_test')

CHECK = textwrap.dedent('''
    import os.path as osp
    import sys

    import mmoaml
    from mmengine.config import Config
    from mmengine.utils import get_installed_path

    package = get_installed_path('mmoaml')
    assert osp.dirname(mmoaml.__file__) == package, (mmoaml.__file__, package)
    assert not package.startswith(sys.argv[1]), package  # not the checkout
    configs = osp.join(package, '.mim', 'configs')
    cfg = Config.fromfile(osp.join(configs, 'oaml_synthface.py'))
    print('installed config:', cfg.model.type)
    assert osp.isfile(osp.join(package, '.mim', 'tools', 'train.py'))

    # MMEngine resolves "mmoaml::<dir>/<file>" in a _base_ list through the installed
    # package's .mim/configs once mmoaml's entry point has listed the package.
    from mmoaml.utils import register_all_modules
    register_all_modules()
    with open('user_cfg.py', 'w') as f:
        f.write("_base_ = ['mmoaml::_base_/models/oaml_ir_small.py']\\n")
    print('external base:', Config.fromfile('user_cfg.py').model.type)
    try:
        Config.fromfile('mmoaml::oaml_synthface.py')
        print('mmoaml:: fromfile: ok')
    except Exception as err:  # MMEngine 0.10.x: only _base_ entries resolve "pkg::"
        print('mmoaml:: fromfile:', type(err).__name__)
    from mmoaml.ops import aligned_pairs, axis_maxima  # built from the installed sources
    print('kernels:', *(m.load_kernel() is not None for m in (aligned_pairs, axis_maxima)))
    try:
        from mmoaml.apis import init_model
    except ImportError:
        print('init_model: no mmoaml.apis')
    else:
        print('init_model:', type(init_model('oaml_synthface')).__name__)
''')


def _run(cmd, cwd, env=None, timeout=180):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*SKIP), symlinks=True)
    _run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps', '--no-build-isolation',
          '-q', '-w', tmp / 'dist'], cwd=src)
    wheels = list((tmp / 'dist').glob('mmoaml-*.whl'))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_carries_configs_tools_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    configs = {n for n in names if n.startswith('mmoaml/.mim/configs/')}
    for config in (REPO / 'configs').rglob('*.py'):
        assert f'mmoaml/.mim/configs/{config.relative_to(REPO / "configs")}' in configs
    assert 'mmoaml/.mim/model-index.yml' in names
    assert 'mmoaml/.mim/tools/train.py' in names and 'mmoaml/.mim/tools/dist_train.sh' in names
    assert 'mmoaml/.mim/tools/dataset_converters/folder_to_rec.py' in names
    # the kernels' sources, built on first use
    assert {'mmoaml/ops/aligned_pairs.c', 'mmoaml/ops/axis_maxima.c'} <= set(names)
    assert not any('__pycache__' in n for n in names)
    assert any(n.endswith('.dist-info/LICENSE') for n in names) or any(
        n.endswith('/licenses/LICENSE') for n in names)
    metadata = next(n for n in names if n.endswith('.dist-info/METADATA'))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert 'Author: mmoaml contributors' in text
    assert 'Provides-Extra: deploy' in text or not (REPO / 'requirements' / 'deploy.txt').exists()


def test_installed_wheel_loads_its_configs_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', venv],
         cwd=tmp_path)
    python = venv / 'bin' / 'python'
    purelib = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                   cwd=tmp_path).strip()
    # this environment's packages (torch, mmengine, ...), after the venv's own
    Path(purelib, 'project_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    _run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '-q',
          wheel], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    work = tmp_path / 'elsewhere'
    work.mkdir()
    out = _run([python, '-c', CHECK, str(REPO)], cwd=work, env=env)
    assert 'installed config: OAML' in out
    assert 'external base: OAML' in out
    assert 'kernels: True True' in out
    if 'init_model: no mmoaml.apis' not in out:
        assert 'init_model: OAML' in out, out
    print(out)
