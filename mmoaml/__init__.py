"""mmoaml: occlusion-aware face recognition (OAML) for OpenMMLab."""
# Importing fileio installs mmoaml's safe checkpoint loader into MMEngine (fileio/checkpoint.py).
from . import fileio  # noqa: F401
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
