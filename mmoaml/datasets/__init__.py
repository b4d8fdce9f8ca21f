"""Registered face datasets, with their transforms and samplers."""
from . import samplers, transforms  # noqa: F401
from .base_face_dataset import BaseFaceDataset
from .face_folder_dataset import IMG_EXTENSIONS, FaceFolderDataset
from .mx_face_dataset import MXFaceDataset
from .occluded_face_dataset import OccludedFaceDataset
from .samplers import *  # noqa: F401,F403
from .synthface_dataset import SynthFaceDataset
from .transforms import *  # noqa: F401,F403
from .verification_bin_dataset import VerificationBinDataset

__all__ = [
    'BaseFaceDataset', 'IMG_EXTENSIONS', 'FaceFolderDataset', 'OccludedFaceDataset',
    'MXFaceDataset', 'VerificationBinDataset', 'SynthFaceDataset'
]
# The subpackages' public names stay exported by this package too.
__all__ += list(getattr(samplers, '__all__', ())) + list(getattr(transforms, '__all__', ()))
