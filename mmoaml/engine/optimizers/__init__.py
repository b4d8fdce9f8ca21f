from .finite_optim_wrapper import FiniteLossOptimWrapper

__all__ = ['FiniteLossOptimWrapper']
