from .base_face_metric import BaseFaceMetric, eval_mode
from .dump_face_features import (DumpFaceFeatures, FaceFeatureDump, load_face_features,
                                 score_face_features)
from .face_identification import FaceIdentificationMetric
from .face_verification import FaceVerificationMetric

__all__ = [
    'BaseFaceMetric', 'eval_mode', 'FaceVerificationMetric', 'FaceIdentificationMetric',
    'DumpFaceFeatures', 'FaceFeatureDump', 'load_face_features', 'score_face_features'
]
