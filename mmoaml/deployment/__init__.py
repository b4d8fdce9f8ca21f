"""What runs outside PyTorch training: the ONNX inference graph of an OAML model and QAConv
scoring of its exported feature maps in NumPy (docs/deployment.md)."""
from .export import INPUT_NAME, OAMLExportWrapper, export_onnx, onnx_runtime_parity, random_images
from .qaconv_numpy import (QACONV_PARAM_KEYS, load_qaconv_params, qaconv_pair_scores, qaconv_params,
                           qaconv_scores, save_qaconv_params)

__all__ = [
    'INPUT_NAME', 'OAMLExportWrapper', 'export_onnx', 'onnx_runtime_parity', 'random_images',
    'QACONV_PARAM_KEYS', 'qaconv_params', 'save_qaconv_params', 'load_qaconv_params',
    'qaconv_scores', 'qaconv_pair_scores'
]
