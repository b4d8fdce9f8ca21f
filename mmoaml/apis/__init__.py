"""Inference on your own photos: model building, embeddings, visibility, verification, search."""
from .inference import (GALLERY_FORMAT, SCORE_TYPES, FaceVerifier, Gallery, find_config,
                        fixed_score_stats, init_model)

__all__ = [
    'init_model', 'find_config', 'FaceVerifier', 'Gallery', 'SCORE_TYPES', 'GALLERY_FORMAT',
    'fixed_score_stats'
]
