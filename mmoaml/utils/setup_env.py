"""Set-up of mmoaml's entry points: module registration, default scope, checkpoint loading and
dataloader options."""
import datetime
import logging
import warnings
from typing import List, Tuple

from mmengine import DefaultScope
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.logging import print_log

from mmoaml.fileio.checkpoint import install_safe_checkpoint_loader

_LOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmoaml subpackage so that all its modules are registered.

    MMPretrain's modules are registered too, since mmoaml's registries are its children and
    mmoaml configs use its components by plain name. As mmoaml's entry point, it also installs
    mmoaml's safe checkpoint loader into MMEngine's ``CheckpointLoader`` (process-wide;
    :func:`mmoaml.fileio.install_safe_checkpoint_loader`) and lists mmoaml in MMEngine's
    package table, so that ``_base_ = ['mmoaml::_base_/...']`` resolves; importing mmoaml does
    neither.

    Args:
        init_default_scope (bool): Make ``'mmoaml'`` the default scope. If another scope is
            current, a new instance named ``mmoaml-<timestamp>`` is created so that the current
            one is not overwritten. Defaults to True.
    """
    from mmpretrain.utils import register_all_modules as register_mmpretrain
    register_mmpretrain(init_default_scope=False)

    import mmoaml.datasets  # noqa: F401,F811
    import mmoaml.engine  # noqa: F401,F811
    import mmoaml.evaluation  # noqa: F401,F811
    import mmoaml.models  # noqa: F401,F811
    import mmoaml.visualization  # noqa: F401,F811

    install_safe_checkpoint_loader()
    # MMEngine resolves "mmoaml::<dir>/<file>" in a config's _base_ list through the installed
    # package's .mim/configs only for packages in this table, which does not list mmoaml.
    MODULE2PACKAGE.setdefault('mmoaml', 'mmoaml')

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    never_created = current is None or not DefaultScope.check_instance_created('mmoaml')
    if never_created:
        DefaultScope.get_instance('mmoaml', scope_name='mmoaml')
        return
    if current.scope_name != 'mmoaml':
        warnings.warn('The current default scope '
                      f'"{current.scope_name}" is not "mmoaml", '
                      '`register_all_modules` will force the current '
                      'default scope to be "mmoaml". If this is not '
                      'expected, please set `init_default_scope=False`.')
        new_instance_name = f'mmoaml-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_instance_name, scope_name='mmoaml')


def dataloader_cfgs(cfg: Config) -> List[Tuple[str, dict]]:
    """``(config key, loader config)`` of every dataloader in ``cfg``.

    The train, val and test loaders (a dict or a list of dicts each) and every loader config
    of a custom hook (a hook argument that is a dict with a ``dataset``, as the occlusion
    stream's ``occluded_loader``/``clean_loader``). A loader shared by two keys appears once.
    """
    found: List[Tuple[str, dict]] = []
    seen = set()

    def add(name, loader):
        if isinstance(loader, dict) and id(loader) not in seen:
            seen.add(id(loader))
            found.append((name, loader))

    for key in _LOADER_KEYS:
        value = cfg.get(key)
        if isinstance(value, (list, tuple)):
            for i, loader in enumerate(value):
                add(f'{key}.{i}', loader)
        else:
            add(key, value)
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict):
            for arg, value in hook.items():
                if isinstance(value, dict) and 'dataset' in value:
                    add(f'custom_hooks.{i}.{arg}', value)
    return found


def setup_dataloaders(cfg: Config,
                      no_pin_memory: bool = False,
                      no_persistent_workers: bool = False) -> None:
    """Apply the tools' dataloader flags to every loader of ``cfg`` (in place).

    ``no_pin_memory`` / ``no_persistent_workers`` set ``pin_memory`` / ``persistent_workers``
    to False in every loader, as MMPretrain's ``--no-pin-memory`` / ``--no-persistent-workers``
    do. Whatever the flags, a loader with ``num_workers=0`` gets ``persistent_workers=False``
    (logged): torch's DataLoader refuses persistent workers without workers, which makes e.g.
    ``--cfg-options val_dataloader.0.num_workers=0`` fail otherwise.

    Args:
        cfg (Config): The merged config.
        no_pin_memory (bool): Disable ``pin_memory``. Defaults to False.
        no_persistent_workers (bool): Disable ``persistent_workers``. Defaults to False.
    """
    for name, loader in dataloader_cfgs(cfg):
        if no_pin_memory:
            loader['pin_memory'] = False
        if no_persistent_workers:
            loader['persistent_workers'] = False
        if loader.get('persistent_workers') and not loader.get('num_workers', 0):
            loader['persistent_workers'] = False
            print_log(f'{name}: num_workers=0, so persistent_workers is set to False',
                      logger='current', level=logging.INFO)
