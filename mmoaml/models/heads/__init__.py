from .adaface_head import AdaFaceHead
from .arcface_head import ArcFaceHead
from .cosface_head import CosFaceHead
from .cosine_margin_head import CosineMarginHead
from .occlusion_head import OcclusionHead
from .qaconv_head import QAConvHead

__all__ = [
    'CosineMarginHead', 'AdaFaceHead', 'ArcFaceHead', 'CosFaceHead', 'QAConvHead',
    'OcclusionHead'
]
