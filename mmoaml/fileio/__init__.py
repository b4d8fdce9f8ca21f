"""File formats that mmoaml reads and writes: images, RecordIO packs, verification ``.bin``
sets, checkpoints (safe loading, AdaFace conversion), per-image feature dumps."""
from .adaface_checkpoint import convert_adaface_state_dict, describe_adaface_arch
from .checkpoint import (TRUST_ENV_VAR, NotACheckpointError, UnsafeCheckpointError,
                         checkpoint_state_dict, install_safe_checkpoint_loader,
                         load_checkpoint_file, strip_to_weights, trusted_checkpoints)
from .feature_dump import (DUMP_FORMAT, DUMP_METRICS_FILE, FaceFeatureDump, load_face_features,
                           save_face_features)
from .image import CorruptImageError, decode_image, encode_image, read_image
from .model_state import CheckpointMismatchError, load_model_state
from .npz import open_npz
from .recordio import (RECORDIO_MAGIC, IRHeader, RecordIOError, RecordIOReader, RecordIOWriter,
                       load_recordio_index, pack_ir_record, unpack_ir_record, write_face_recordio)
from .verification_bin import (UnsafeVerificationBinError, dump_verification_bin,
                               load_verification_bin, load_visibility_masks, masks_path_for,
                               save_visibility_masks)

__all__ = [
    'open_npz',
    'convert_adaface_state_dict', 'describe_adaface_arch', 'TRUST_ENV_VAR',
    'UnsafeCheckpointError', 'load_checkpoint_file', 'strip_to_weights', 'trusted_checkpoints',
    'NotACheckpointError', 'CheckpointMismatchError', 'checkpoint_state_dict',
    'install_safe_checkpoint_loader', 'load_model_state',
    'CorruptImageError', 'decode_image', 'encode_image', 'read_image', 'RECORDIO_MAGIC',
    'IRHeader', 'RecordIOError', 'RecordIOReader', 'RecordIOWriter', 'load_recordio_index',
    'pack_ir_record', 'unpack_ir_record', 'write_face_recordio', 'UnsafeVerificationBinError',
    'dump_verification_bin', 'load_verification_bin', 'load_visibility_masks', 'masks_path_for',
    'save_visibility_masks', 'DUMP_FORMAT', 'DUMP_METRICS_FILE', 'FaceFeatureDump',
    'load_face_features', 'save_face_features'
]
