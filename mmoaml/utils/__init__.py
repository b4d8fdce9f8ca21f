from .checkpoint import (TRUST_ENV_VAR, UnsafeCheckpointError, load_checkpoint_file,
                         strip_to_weights, trusted_checkpoints)
from .setup_env import register_all_modules
from .visibility import area_downsample

__all__ = [
    'register_all_modules', 'area_downsample', 'load_checkpoint_file', 'trusted_checkpoints',
    'strip_to_weights', 'UnsafeCheckpointError', 'TRUST_ENV_VAR'
]
