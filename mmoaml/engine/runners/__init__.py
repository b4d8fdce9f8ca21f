from .multi_loops import MultiTestLoop, MultiValLoop

__all__ = ['MultiValLoop', 'MultiTestLoop']
