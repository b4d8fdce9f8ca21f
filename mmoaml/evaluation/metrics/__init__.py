from .face_identification import FaceIdentificationMetric
from .face_verification import FaceVerificationMetric

__all__ = ['FaceVerificationMetric', 'FaceIdentificationMetric']
