"""One inference graph of an OAML model for ONNX: raw BGR images in, embedding and maps out.

:class:`OAMLExportWrapper` defines the graph that :func:`export_onnx` writes (and
``tools/deployment/pytorch2onnx.py`` calls):

- input ``images``: float32 ``[B, 3, H, W]`` with the raw pixel values of the decoded image,
  0..255 (uint8 values cast to float), in the channel order mmoaml decodes images in (BGR). The
  model's :class:`~mmoaml.models.FaceDataPreprocessor` steps run inside the graph: the optional
  BGR -> RGB swap (``to_rgb``) and ``(x - mean) / std``, with the config's values.
- outputs, in this order:

  - ``embedding`` float32 ``[B, D]``: the neck's unit embedding of the image as given, *not*
    flip-fused; ``OAML.predict``'s embedding is ``l2norm(embedding(x) * norm(x) +
    embedding(flip(x)) * norm(flip(x)))``, i.e. two calls of the graph (the image and its
    horizontal flip) and a sum of ``embedding * norm``;
  - ``norm`` float32 ``[B, 1]``: the L2 norm of the embedding before normalisation;
  - ``feature_map`` float32 ``[B, C, h, w]``: the map at ``feature_level`` with every
    location's ``C``-vector L2-normalised, as ``OAML.predict`` stores it (there in float16);
  - ``visibility`` float32 ``[B, 1, h, w]`` in ``[0, 1]`` (1 = visible face): the occlusion
    head's prediction; present only when the model has an occlusion head.

The batch axis is dynamic; the image size is fixed (the backbone's ``input_size``, or the
``input_size`` argument). The graph is the model in eval mode (BatchNorm with running
statistics, no dropout). QAConv scoring of the exported maps is
:mod:`mmoaml.deployment.qaconv_numpy`; see docs/deployment.md.
"""
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    'INPUT_NAME', 'OAMLExportWrapper', 'export_onnx', 'onnx_runtime_parity', 'random_images'
]

#: Name of the graph's input.
INPUT_NAME = 'images'


class OAMLExportWrapper(nn.Module):
    """The inference graph of an ``OAML`` model: raw images -> named outputs (module docstring).

    Args:
        model (nn.Module): An ``OAML`` model (``extract_feat``, ``backbone``, ``occlusion_head``
            and a ``data_preprocessor`` with ``mean``, ``std`` and ``to_rgb``, as
            ``FaceDataPreprocessor``). It is put in eval mode; its weights are shared, not
            copied.
        input_size (tuple[int, int], optional): ``(H, W)`` of the images. Defaults to None:
            the backbone's ``input_size`` (``IResNet``); other backbones need it.

    Examples:
        >>> import torch
        >>> from mmoaml.deployment import OAMLExportWrapper
        >>> from mmoaml.registry import MODELS
        >>> model = MODELS.build(dict(
        ...     type='OAML', _scope_='mmoaml',
        ...     backbone=dict(type='IResNet', depth=18, input_size=32, stem_channels=8,
        ...                   stage_channels=(8, 8, 16, 16), stage_units=(1, 1, 1, 1)),
        ...     neck=dict(type='FaceEmbeddingNeck', in_channels=16, feat_size=2, embed_dim=8),
        ...     adaface_head=dict(type='AdaFaceHead', embed_dim=8, num_classes=4),
        ...     qaconv_head=dict(type='QAConvHead', num_features=16, height=2, width=2),
        ...     occlusion_head=dict(type='OcclusionHead', in_channels=16, mid_channels=4)))
        >>> graph = OAMLExportWrapper(model)
        >>> graph.output_names
        ('embedding', 'norm', 'feature_map', 'visibility')
        >>> outputs = graph(torch.randint(0, 256, (2, 3, 32, 32)).float())
        >>> [tuple(o.shape) for o in outputs]
        [(2, 8), (2, 1), (2, 16, 2, 2), (2, 1, 2, 2)]
    """

    def __init__(self, model: nn.Module,
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        pre = getattr(model, 'data_preprocessor', None)
        missing = [name for name in ('mean', 'std', 'to_rgb') if not hasattr(pre, name)]
        if missing:
            raise TypeError('OAMLExportWrapper: the model\'s data_preprocessor must have mean, '
                            f'std and to_rgb (FaceDataPreprocessor), got {type(pre).__name__}')
        if not hasattr(model, 'extract_feat'):
            raise TypeError('OAMLExportWrapper: the model needs extract_feat (OAML), got '
                            f'{type(model).__name__}')
        self.model = model.eval()
        self.to_rgb = bool(pre.to_rgb)
        self.register_buffer('mean', pre.mean.detach().float().reshape(1, 3, 1, 1).clone(),
                             persistent=False)
        self.register_buffer('std', pre.std.detach().float().reshape(1, 3, 1, 1).clone(),
                             persistent=False)
        self.with_visibility = getattr(model, 'occlusion_head', None) is not None
        size = getattr(model.backbone, 'input_size', None) if input_size is None else input_size
        if size is None:
            raise TypeError('OAMLExportWrapper: the backbone has no input_size; pass '
                            'input_size=(H, W)')
        self._input_size = (int(size[0]), int(size[1]))

    @property
    def output_names(self) -> Tuple[str, ...]:
        """Names of the outputs, in the order :meth:`forward` returns them."""
        names = ('embedding', 'norm', 'feature_map')
        return names + ('visibility', ) if self.with_visibility else names

    @property
    def input_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the graph's images."""
        return self._input_size

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Raw float BGR images ``[B, 3, H, W]`` (0..255) -> the outputs of
        :attr:`output_names`."""
        x = images.float()
        if self.to_rgb:
            x = x[:, [2, 1, 0]]
        x = (x - self.mean) / self.std
        feats = self.model.extract_feat(x)
        fmap = feats['feature_map'].float()
        # F.normalize(fmap, dim=1) as OAML.predict applies it: x / max(||x||, 1e-12).
        fmap = fmap / torch.linalg.vector_norm(fmap, dim=1, keepdim=True).clamp_min(1e-12)
        outputs = (feats['embedding'].float(), feats['norm'].float(), fmap)
        if self.with_visibility:
            outputs = outputs + (feats['visibility'].float(), )
        return outputs


def random_images(batch: int, size: Sequence[int], seed: int = 0) -> np.ndarray:
    """Random raw images: float32 ``[batch, 3, H, W]`` of integer values 0..255."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, 3, *size)).astype(np.float32)


def export_onnx(model: nn.Module,
                out_file: str,
                batch: int = 1,
                opset: int = 17,
                dynamo: bool = False,
                input_size: Optional[Tuple[int, int]] = None) -> OAMLExportWrapper:
    """Write the graph of :class:`OAMLExportWrapper` to ``out_file`` (ONNX, dynamic batch).

    Args:
        model (nn.Module): The ``OAML`` model (weights loaded); moved to the CPU, eval mode.
        out_file (str): Path of the ``.onnx`` file.
        batch (int): Batch size of the example input the graph is traced with (the batch axis
            stays dynamic). Defaults to 1.
        opset (int): ONNX opset. Defaults to 17.
        dynamo (bool): Use torch's dynamo-based exporter (needs ``onnxscript``) instead of the
            TorchScript one. Defaults to False.
        input_size (tuple[int, int], optional): ``(H, W)`` of the images; defaults to the
            backbone's ``input_size`` (required for backbones without one).

    Returns:
        OAMLExportWrapper: The exported module (for comparisons against the ONNX file).
    """
    if batch < 1:
        raise ValueError(f'export_onnx: batch must be >= 1, got {batch}')
    graph = OAMLExportWrapper(model.cpu(), input_size).eval()
    example = torch.from_numpy(random_images(batch, graph.input_size))
    names = list(graph.output_names)
    directory = osp.dirname(osp.abspath(out_file))
    if not osp.isdir(directory):
        raise FileNotFoundError(f'export_onnx: the directory of {out_file} does not exist')
    kwargs = dict(input_names=[INPUT_NAME], output_names=names, opset_version=opset)
    with torch.no_grad(), warnings.catch_warnings():
        # The components' shape checks read static sizes (channels, image size), not the batch.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        if dynamo:
            batch_dim = torch.export.Dim('batch', min=1)
            torch.onnx.export(graph, (example, ), out_file, dynamo=True,
                              dynamic_shapes={'images': {0: batch_dim}}, external_data=False,
                              verbose=False,
                              **kwargs)
        else:
            axes = {name: {0: 'batch'} for name in [INPUT_NAME] + names}
            torch.onnx.export(graph, (example, ), out_file, dynamo=False, dynamic_axes=axes,
                              do_constant_folding=True, **kwargs)
    return graph


def onnx_runtime_parity(graph: OAMLExportWrapper,
                        onnx_file: str,
                        batch_sizes: Sequence[int] = (1, 3),
                        seed: int = 0,
                        threads: Optional[int] = None) -> Dict[int, Dict[str, float]]:
    """Run ONNX Runtime and PyTorch on the same random raw images and compare every output.

    Args:
        graph (OAMLExportWrapper): The module that was exported.
        onnx_file (str): The exported file.
        batch_sizes (Sequence[int]): One comparison per batch size (one set of images each).
            Defaults to ``(1, 3)``.
        seed (int): Seed of the first batch's images (then ``seed + 1``, ...). Defaults to 0.
        threads (int, optional): ONNX Runtime intra-op threads. Defaults to its own choice.

    Returns:
        dict: ``{batch: {output name: max |onnxruntime - torch|}}`` (float32 outputs).
    """
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError('onnx_runtime_parity needs onnxruntime: pip install -r '
                          'requirements/deploy.txt (or the deploy extra)') from error
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    names: List[str] = [o.name for o in session.get_outputs()]
    if tuple(names) != graph.output_names:
        raise ValueError(f'{onnx_file}: outputs {names}, expected {list(graph.output_names)}')
    result = {}
    for k, batch in enumerate(batch_sizes):
        images = random_images(batch, graph.input_size, seed + k)
        ort_out = session.run(names, {INPUT_NAME: images})
        with torch.no_grad():
            torch_out = graph(torch.from_numpy(images))
        result[int(batch)] = {
            name: float(np.abs(a.astype(np.float64) - b.double().numpy()).max())
            for name, a, b in zip(names, ort_out, torch_out)
        }
    return result
