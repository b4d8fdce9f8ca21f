"""Data conventions shared by every layer: field names, the alignment template, visibility maps."""
from .alignment import align_face, similarity_transform
from .data_sample import stack_gt_visibility, stack_labels
from .face_template import ARCFACE_TEMPLATE_112, face_region_prior, template_points
from .fields import EMBEDDING, FEATURE_MAP, GT_LABEL, GT_VISIBILITY, OCC_KEY, VISIBILITY
from .visibility import area_downsample

__all__ = [
    'OCC_KEY', 'GT_LABEL', 'GT_VISIBILITY', 'EMBEDDING', 'FEATURE_MAP', 'VISIBILITY',
    'area_downsample', 'stack_labels', 'stack_gt_visibility', 'ARCFACE_TEMPLATE_112',
    'template_points', 'face_region_prior', 'similarity_transform', 'align_face'
]
