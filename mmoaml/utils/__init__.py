from .setup_env import register_all_modules
from .visibility import area_downsample

__all__ = ['register_all_modules', 'area_downsample']
