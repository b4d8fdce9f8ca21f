from . import samplers, transforms  # noqa: F401
from .base_face_dataset import BaseFaceDataset
from .face_folder_dataset import IMG_EXTENSIONS, FaceFolderDataset
from .image_io import CorruptImageError, decode_image, encode_image, read_image
from .mx_face_dataset import MXFaceDataset
from .occluded_face_dataset import OccludedFaceDataset
from .recordio import (RECORDIO_MAGIC, IRHeader, RecordIOError, RecordIOReader, RecordIOWriter,
                       load_recordio_index, pack_ir_record, unpack_ir_record,
                       write_face_recordio)
from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
from .verification_bin import (UnsafeVerificationBinError, dump_verification_bin,
                               load_verification_bin, load_visibility_masks, masks_path_for,
                               save_visibility_masks)
from .verification_bin_dataset import VerificationBinDataset

__all__ = [
    'CorruptImageError', 'decode_image', 'read_image', 'encode_image', 'BaseFaceDataset',
    'IMG_EXTENSIONS', 'FaceFolderDataset', 'OccludedFaceDataset', 'RECORDIO_MAGIC',
    'RecordIOError', 'IRHeader', 'pack_ir_record', 'unpack_ir_record', 'load_recordio_index',
    'RecordIOReader', 'RecordIOWriter', 'write_face_recordio', 'MXFaceDataset',
    'UnsafeVerificationBinError', 'load_verification_bin', 'dump_verification_bin',
    'masks_path_for', 'load_visibility_masks', 'save_visibility_masks', 'VerificationBinDataset'
]
# The subpackages' public names stay exported by this package too.
__all__ += list(getattr(samplers, '__all__', ())) + list(getattr(transforms, '__all__', ()))
from .synthface import SynthFaceDataset, SynthFaceGenerator, write_synthface  # noqa: E402
__all__ += ['SynthFaceDataset', 'SynthFaceGenerator', 'write_synthface']
