"""Registries of mmoaml.

Each registry is a child of MMPretrain's registry of the same kind (itself a child of MMEngine's
root), so mmoaml configs can use MMPretrain components (losses, transforms, optimisers) by plain
name, and nested builds inside MMPretrain components still resolve. ``locations`` lets
``default_scope='mmoaml'`` import the implementing subpackage on first lookup.

Other projects embed an mmoaml component with ``custom_imports=dict(imports=['mmoaml'])`` and
``_scope_='mmoaml'`` on that component's config.
"""
from mmengine.registry import Registry
from mmpretrain.registry import DATA_SAMPLERS as MMPRETRAIN_DATA_SAMPLERS
from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
from mmpretrain.registry import EVALUATORS as MMPRETRAIN_EVALUATORS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import LOG_PROCESSORS as MMPRETRAIN_LOG_PROCESSORS
from mmpretrain.registry import LOOPS as MMPRETRAIN_LOOPS
from mmpretrain.registry import METRICS as MMPRETRAIN_METRICS
from mmpretrain.registry import MODEL_WRAPPERS as MMPRETRAIN_MODEL_WRAPPERS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMPRETRAIN_OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.registry import OPTIM_WRAPPERS as MMPRETRAIN_OPTIM_WRAPPERS
from mmpretrain.registry import OPTIMIZERS as MMPRETRAIN_OPTIMIZERS
from mmpretrain.registry import PARAM_SCHEDULERS as MMPRETRAIN_PARAM_SCHEDULERS
from mmpretrain.registry import RUNNERS as MMPRETRAIN_RUNNERS
from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS
from mmpretrain.registry import VISBACKENDS as MMPRETRAIN_VISBACKENDS
from mmpretrain.registry import VISUALIZERS as MMPRETRAIN_VISUALIZERS
from mmpretrain.registry import WEIGHT_INITIALIZERS as MMPRETRAIN_WEIGHT_INITIALIZERS

__all__ = [
    'RUNNERS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'DATASETS', 'DATA_SAMPLERS',
    'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'METRICS', 'EVALUATOR',
    'VISUALIZERS', 'VISBACKENDS'
]


def child_registry(name: str, parent: Registry, package: str) -> Registry:
    """A registry in scope mmoaml below MMPretrain's ``parent``.

    Args:
        name (str): the registry's name.
        parent (Registry): MMPretrain's registry of the same kind.
        package (str): the mmoaml subpackage implementing it (``'engine'`` = ``mmoaml.engine``),
            imported on the first lookup with ``default_scope='mmoaml'``.
    """
    # An explicit scope: Registry would otherwise infer it from the calling frame's module.
    return Registry(name, parent=parent, scope='mmoaml', locations=[f'mmoaml.{package}'])


RUNNERS = child_registry('runner', MMPRETRAIN_RUNNERS, 'engine')
LOOPS = child_registry('loop', MMPRETRAIN_LOOPS, 'engine')
HOOKS = child_registry('hook', MMPRETRAIN_HOOKS, 'engine')
LOG_PROCESSORS = child_registry('log processor', MMPRETRAIN_LOG_PROCESSORS, 'engine')
OPTIMIZERS = child_registry('optimizer', MMPRETRAIN_OPTIMIZERS, 'engine')
OPTIM_WRAPPERS = child_registry('optim_wrapper', MMPRETRAIN_OPTIM_WRAPPERS, 'engine')
OPTIM_WRAPPER_CONSTRUCTORS = child_registry('optimizer wrapper constructor',
                                            MMPRETRAIN_OPTIM_WRAPPER_CONSTRUCTORS, 'engine')
PARAM_SCHEDULERS = child_registry('parameter scheduler', MMPRETRAIN_PARAM_SCHEDULERS, 'engine')

DATASETS = child_registry('dataset', MMPRETRAIN_DATASETS, 'datasets')
DATA_SAMPLERS = child_registry('data sampler', MMPRETRAIN_DATA_SAMPLERS, 'datasets')
TRANSFORMS = child_registry('transform', MMPRETRAIN_TRANSFORMS, 'datasets')

MODELS = child_registry('model', MMPRETRAIN_MODELS, 'models')
MODEL_WRAPPERS = child_registry('model_wrapper', MMPRETRAIN_MODEL_WRAPPERS, 'engine')
WEIGHT_INITIALIZERS = child_registry('weight initializer', MMPRETRAIN_WEIGHT_INITIALIZERS,
                                     'models')

METRICS = child_registry('metric', MMPRETRAIN_METRICS, 'evaluation')
EVALUATOR = child_registry('evaluator', MMPRETRAIN_EVALUATORS, 'evaluation')

VISUALIZERS = child_registry('visualizer', MMPRETRAIN_VISUALIZERS, 'visualization')
VISBACKENDS = child_registry('vis_backend', MMPRETRAIN_VISBACKENDS, 'visualization')
