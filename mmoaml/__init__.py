"""mmoaml: occlusion-aware face recognition (OAML) for OpenMMLab."""
# fileio stays importable as mmoaml.fileio; importing it changes nothing in MMEngine (the safe
# checkpoint loader is installed by mmoaml's entry points, see fileio/checkpoint.py).
from . import fileio  # noqa: F401
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
