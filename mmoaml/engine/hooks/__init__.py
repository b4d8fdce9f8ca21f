from .finite_checkpoint_hook import FiniteCheckpointHook
from .iteration_seed_hook import IterationSeedHook
from .occlusion_batch_hook import OcclusionBatchHook

__all__ = ['OcclusionBatchHook', 'IterationSeedHook', 'FiniteCheckpointHook']
