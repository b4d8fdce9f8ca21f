"""Data conventions shared by every layer: field names and visibility maps."""
from .data_sample import stack_gt_visibility, stack_labels
from .fields import EMBEDDING, FEATURE_MAP, GT_LABEL, GT_VISIBILITY, OCC_KEY, VISIBILITY
from .visibility import area_downsample

__all__ = [
    'OCC_KEY', 'GT_LABEL', 'GT_VISIBILITY', 'EMBEDDING', 'FEATURE_MAP', 'VISIBILITY',
    'area_downsample', 'stack_labels', 'stack_gt_visibility'
]
