from .autocast_optim_wrapper import AutocastOptimWrapper
from .finite_optim_wrapper import FiniteLossOptimWrapper

__all__ = ['FiniteLossOptimWrapper', 'AutocastOptimWrapper']
