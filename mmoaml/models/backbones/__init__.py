from .iresnet import IResNet

__all__ = ['IResNet']
