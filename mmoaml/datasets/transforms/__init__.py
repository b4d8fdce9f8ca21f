from .face_augmenter import FaceAugmenter
from .medical_mask import MedicalMaskOcclusion
from .niqab import NiqabOcclusion
from .occluder_base import ALPHA_OCCLUDED, BaseOccluder, OccluderStyle, PosedOccluder, check_range
from .pack_face_inputs import PackFaceInputs
from .random_occlusion import RandomOcclusion
from .sunglasses import SunglassesOcclusion

__all__ = [
    'BaseOccluder', 'PosedOccluder', 'check_range', 'OccluderStyle', 'ALPHA_OCCLUDED',
    'MedicalMaskOcclusion', 'NiqabOcclusion', 'SunglassesOcclusion', 'RandomOcclusion',
    'FaceAugmenter', 'PackFaceInputs'
]
