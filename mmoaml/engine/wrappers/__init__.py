from .cpu_distributed import CPUDistributedDataParallel, close_distributed, setup_cpu_distributed

__all__ = ['CPUDistributedDataParallel', 'close_distributed', 'setup_cpu_distributed']
