from .base_face_metric import BaseFaceMetric
from .dump_face_features import (DumpFaceFeatures, FaceFeatureDump, load_face_features,
                                 score_face_features)
from .face_identification import FaceIdentificationMetric
from .face_verification import FaceVerificationMetric

__all__ = [
    'BaseFaceMetric', 'FaceVerificationMetric', 'FaceIdentificationMetric', 'DumpFaceFeatures',
    'FaceFeatureDump', 'load_face_features', 'score_face_features'
]
