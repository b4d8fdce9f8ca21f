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

RUNNERS = Registry('runner', parent=MMPRETRAIN_RUNNERS, locations=['mmoaml.engine'])
LOOPS = Registry('loop', parent=MMPRETRAIN_LOOPS, locations=['mmoaml.engine'])
HOOKS = Registry('hook', parent=MMPRETRAIN_HOOKS, locations=['mmoaml.engine'])
LOG_PROCESSORS = Registry(
    'log processor', parent=MMPRETRAIN_LOG_PROCESSORS, locations=['mmoaml.engine'])
OPTIMIZERS = Registry('optimizer', parent=MMPRETRAIN_OPTIMIZERS, locations=['mmoaml.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMPRETRAIN_OPTIM_WRAPPERS, locations=['mmoaml.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMPRETRAIN_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmoaml.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMPRETRAIN_PARAM_SCHEDULERS, locations=['mmoaml.engine'])

DATASETS = Registry('dataset', parent=MMPRETRAIN_DATASETS, locations=['mmoaml.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMPRETRAIN_DATA_SAMPLERS, locations=['mmoaml.datasets'])
TRANSFORMS = Registry('transform', parent=MMPRETRAIN_TRANSFORMS, locations=['mmoaml.datasets'])

MODELS = Registry('model', parent=MMPRETRAIN_MODELS, locations=['mmoaml.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMPRETRAIN_MODEL_WRAPPERS, locations=['mmoaml.engine'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMPRETRAIN_WEIGHT_INITIALIZERS, locations=['mmoaml.models'])

METRICS = Registry('metric', parent=MMPRETRAIN_METRICS, locations=['mmoaml.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMPRETRAIN_EVALUATORS, locations=['mmoaml.evaluation'])

VISUALIZERS = Registry(
    'visualizer', parent=MMPRETRAIN_VISUALIZERS, locations=['mmoaml.visualization'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMPRETRAIN_VISBACKENDS, locations=['mmoaml.visualization'])
