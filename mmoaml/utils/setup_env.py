"""Registration of every mmoaml module and the default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmoaml subpackage so that all its modules are registered.

    MMPretrain's modules are registered too, since mmoaml's registries are its children and
    mmoaml configs use its components by plain name.

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
