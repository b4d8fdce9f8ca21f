"""Install mmoaml.

``pip install -e ".[tests]"`` works on a machine with only Python and pip: MMCV comes as the
pure-Python ``mmcv-lite`` wheel unless a full ``mmcv`` (with compiled ops) is already installed,
in which case it is left alone (both wheels provide the ``mmcv`` module, so installing the lite
one would overwrite the compiled ops).
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import warnings
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(HERE, 'mmoaml', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>`` (comments and ``-r`` lines dropped); an
    empty list when the file does not exist."""
    reqs = []
    if not os.path.exists(os.path.join(HERE, 'requirements', name)):
        return reqs
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


#: Folders shipped inside the package as ``mmoaml/.mim/<name>``, as OpenMMLab packages do, so
#: that an installed mmoaml carries its configs and tools (``mim``, MMEngine's ``mmoaml::``).
MIM_FILES = ('configs', 'tools')


def add_mim_extension() -> None:
    """Put ``configs`` and ``tools`` into ``mmoaml/.mim`` for the build at hand.

    An editable install (``develop``, ``editable_wheel``) gets symlinks, so the checkout's
    files stay the ones in use; a wheel, sdist or plain install gets copies. Any other command
    (``egg_info``, ...) leaves ``.mim`` alone. Where symlinks are not allowed (Windows without
    the privilege) copies are made instead.
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'build', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'mmoaml', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(HERE, name)
        target = osp.join(mim_path, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), target)
                continue
            except OSError:
                warnings.warn(f'cannot symlink {target}; copying {name} instead')
        shutil.copytree(src, target, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    # MMEngine reads .mim/model-index.yml before it resolves any "mmoaml::<dir>/<file>" base
    # config (no index: FileNotFoundError). mmoaml publishes no model metafiles yet, so the
    # index imports none and every such path resolves under .mim/configs.
    with open(osp.join(mim_path, 'model-index.yml'), 'w', encoding='utf-8') as f:
        f.write('# Written by setup.py: no model metafiles yet; configs are in .mim/configs.\n'
                'Import: []\n')


with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

add_mim_extension()
setup(
    name='mmoaml',
    version=read_version(),
    description='Occlusion-aware face recognition (AdaFace + QAConv + occlusion head) '
                'for OpenMMLab',
    long_description=long_description,
    long_description_content_type='text/markdown',
    author='mmoaml contributors',
    keywords='computer vision, face recognition, occluded face recognition, AdaFace, QAConv, '
             'OpenMMLab, MMEngine',
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Science/Research',
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects')),
    include_package_data=True,
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt') + mmcv_requirements(),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
        'deploy': read_requirements('deploy.txt'),
    },
    zip_safe=False,
)
