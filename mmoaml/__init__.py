"""mmoaml: occlusion-aware face recognition (OAML) for OpenMMLab."""
# Importing utils installs mmoaml's safe checkpoint loader into MMEngine (utils/checkpoint.py).
from . import utils  # noqa: F401
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
