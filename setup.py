"""Install mmoaml.

``pip install -e ".[tests]"`` works on a machine with only Python and pip: MMCV comes as the
pure-Python ``mmcv-lite`` wheel unless a full ``mmcv`` (with compiled ops) is already installed,
in which case it is left alone (both wheels provide the ``mmcv`` module, so installing the lite
one would overwrite the compiled ops).
"""
import os
import re
import subprocess
import sys
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(HERE, 'mmoaml', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    reqs = []
    with open(os.path.join(HERE, 'requirements', name), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-r'):
                reqs.append(line)
    return reqs


def full_mmcv_installed() -> bool:
    """Whether the target environment already holds the full ``mmcv`` distribution.

    Asked in a clean child interpreter because pip's build isolation hides the target
    environment's site-packages from this process.
    """
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONNOUSERSITE')}
    probe = ('import importlib.metadata as m\n'
             'try:\n    m.distribution("mmcv")\nexcept m.PackageNotFoundError:\n'
             '    raise SystemExit(1)\n')
    try:
        return subprocess.run([sys.executable, '-c', probe], env=env,
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def mmcv_requirements() -> list:
    if full_mmcv_installed():
        return ['mmcv>=2.0.0,<2.4.0']
    return read_requirements('mminstall.txt')


with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='mmoaml',
    version=read_version(),
    description='Occlusion-aware face recognition (AdaFace + QAConv + occlusion head) '
                'for OpenMMLab',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects')),
    include_package_data=True,
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt') + mmcv_requirements(),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
    },
    zip_safe=False,
)
