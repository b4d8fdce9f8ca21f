"""Data conventions shared by every layer: field names and visibility maps."""
from .fields import EMBEDDING, FEATURE_MAP, GT_LABEL, GT_VISIBILITY, OCC_KEY, VISIBILITY
from .visibility import area_downsample

__all__ = [
    'OCC_KEY', 'GT_LABEL', 'GT_VISIBILITY', 'EMBEDDING', 'FEATURE_MAP', 'VISIBILITY',
    'area_downsample'
]
