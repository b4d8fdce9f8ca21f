from .dump_face_features import (DumpFaceFeatures, FaceFeatureDump, load_face_features,
                                 score_face_features)
from .face_identification import FaceIdentificationMetric
from .face_verification import FaceVerificationMetric

__all__ = [
    'FaceVerificationMetric', 'FaceIdentificationMetric', 'DumpFaceFeatures', 'FaceFeatureDump',
    'load_face_features', 'score_face_features'
]
