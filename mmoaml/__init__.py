"""mmoaml: occlusion-aware face recognition (OAML) for OpenMMLab."""
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']
