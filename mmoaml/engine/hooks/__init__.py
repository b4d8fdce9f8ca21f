from .occlusion_batch_hook import OcclusionBatchHook

__all__ = ['OcclusionBatchHook']
