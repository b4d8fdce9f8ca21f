from .oaml import OAML

__all__ = ['OAML']
