"""Entry-point helpers: registering every mmoaml module."""
from .data_check import check_data_files
from .setup_env import register_all_modules

__all__ = ['register_all_modules', 'check_data_files']
