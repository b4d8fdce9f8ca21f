from .adaface_checkpoint import convert_adaface_state_dict, describe_adaface_arch

__all__ = ['convert_adaface_state_dict', 'describe_adaface_arch']
