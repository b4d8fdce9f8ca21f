"""Face batch preprocessing: uint8 images -> normalised float tensors on the model's device."""
from typing import Dict, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor

from mmoaml.registry import MODELS
from mmoaml.structures import OCC_KEY


@MODELS.register_module()
class FaceDataPreprocessor(BaseDataPreprocessor):
    """Move a face batch to the device, stack it, convert channel order and normalise.

    Every dataset and transform of mmoaml keeps images in the channel order they were decoded in
    (BGR, cv2/mmcv); this preprocessor is the only place where the order changes. The default
    keeps BGR and maps ``x`` to ``(x / 255 - 0.5) / 0.5 = (x - 127.5) / 127.5``, the input
    convention of AdaFace's released models (mk-minchul/AdaFace ``inference.py``: BGR,
    ``Normalize(0.5, 0.5)``). ``to_rgb=True`` gives the InsightFace/ArcFace convention (RGB).
    ``mean`` and ``std`` are per channel of the *output* order (after the optional swap), as in
    MMEngine's ``ImgDataPreprocessor``.

    Besides the main batch (``inputs``, ``data_samples``) the batch may carry the occlusion
    stream under the key ``'occ'``: ``dict(inputs=..., data_samples=...)``. It goes through the
    same conversion and is returned as ``occ_inputs`` / ``occ_data_samples``, which
    ``OAML.forward`` takes as keyword arguments. (MMPretrain's ``ClsDataPreprocessor`` would
    silently drop that key, so any other key is refused with an error instead.)

    Images must all have the same size: faces are aligned crops of one template size, so a size
    mismatch is a pipeline error, not something to pad away.

    Args:
        mean (Sequence[float]): Per-channel mean on the 0-255 scale. Defaults to
            ``(127.5, 127.5, 127.5)`` (AdaFace, ``Normalize(0.5, 0.5)`` after ``ToTensor``).
        std (Sequence[float]): Per-channel standard deviation on the 0-255 scale. Defaults to
            ``(127.5, 127.5, 127.5)`` (AdaFace).
        to_rgb (bool): Swap BGR -> RGB before normalising. Defaults to False (BGR, AdaFace).
        non_blocking (bool): Asynchronous host-to-device copies. Defaults to False.
        channels_last (bool): Return the images in the ``torch.channels_last`` memory format
            (NHWC strides, same shape), which the convolutions of CUDA (tensor cores) and of
            the CPU (oneDNN) run faster in. ``OAML`` converts its 4-D weights once when its
            preprocessor has this set, so no layout change happens per call. Defaults to False.

    Examples:
        >>> import torch
        >>> from mmoaml.models import FaceDataPreprocessor
        >>> pre = FaceDataPreprocessor()
        >>> out = pre(dict(inputs=[torch.full((3, 2, 2), 255, dtype=torch.uint8)]))
        >>> out['inputs'].shape, float(out['inputs'].max())
        (torch.Size([1, 3, 2, 2]), 1.0)
        >>> # config: data_preprocessor=dict(type='FaceDataPreprocessor', to_rgb=False)
    """

    def __init__(self,
                 mean: Sequence[float] = (127.5, 127.5, 127.5),
                 std: Sequence[float] = (127.5, 127.5, 127.5),
                 to_rgb: bool = False,
                 non_blocking: bool = False,
                 channels_last: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError('FaceDataPreprocessor: mean and std need 3 values (one per channel), '
                             f'got mean={tuple(mean)}, std={tuple(std)}')
        if any(s <= 0 for s in std):
            raise ValueError(f'FaceDataPreprocessor: std must be positive, got {tuple(std)}')
        self.to_rgb = to_rgb
        self.channels_last = channels_last
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> Dict[str, object]:
        """Convert a collated batch.

        Args:
            data (dict): ``inputs`` (uint8 ``[N, 3, H, W]`` tensor or a list of ``[3, H, W]``
                tensors, values on the 0-255 scale, decoded channel order), optional
                ``data_samples`` (list), optional ``occ`` (a dict with the same two keys).
            training (bool): Unused (no batch augmentation); part of the MMEngine interface.

        Returns:
            dict: ``inputs`` float32 ``[N, 3, H, W]`` (channels-last strides if configured),
            ``data_samples`` (None when absent) and,
            only when the batch has an ``occ`` entry, ``occ_inputs`` and ``occ_data_samples``.
        """
        unknown = set(data) - {'inputs', 'data_samples', OCC_KEY}
        if unknown:
            raise KeyError(f'FaceDataPreprocessor: unexpected batch keys {sorted(unknown)}; '
                           "expected 'inputs', 'data_samples' and optionally 'occ'")
        if 'inputs' not in data:
            raise KeyError("FaceDataPreprocessor: the batch has no 'inputs'")
        data = self.cast_data(data)
        result = dict(
            inputs=self._convert(data['inputs'], 'inputs'),
            data_samples=data.get('data_samples'))
        occ = data.get(OCC_KEY)
        if occ is not None:
            if not isinstance(occ, dict) or 'inputs' not in occ:
                raise KeyError("FaceDataPreprocessor: batch['occ'] must be a dict with 'inputs' "
                               "(and 'data_samples'), as OcclusionBatchHook writes it")
            result['occ_inputs'] = self._convert(occ['inputs'], 'occ.inputs')
            result['occ_data_samples'] = occ.get('data_samples')
        return result

    def _convert(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                 name: str) -> torch.Tensor:
        """Stack, swap channels if configured, normalise: -> float32 ``[N, 3, H, W]``."""
        batch = self._stack(inputs, name).float()
        if self.to_rgb:
            batch = batch.flip(1)
        batch = (batch - self.mean) / self.std
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    @staticmethod
    def _stack(inputs: Union[torch.Tensor, Sequence[torch.Tensor]], name: str) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4 or inputs.shape[1] != 3:
                raise ValueError(f'FaceDataPreprocessor: {name} must be [N, 3, H, W], got '
                                 f'{list(inputs.shape)}')
            return inputs
        if not isinstance(inputs, Sequence) or len(inputs) == 0:
            raise ValueError(f'FaceDataPreprocessor: {name} must be a tensor or a non-empty list '
                             f'of [3, H, W] tensors, got {type(inputs).__name__}')
        shapes = [tuple(img.shape) if isinstance(img, torch.Tensor) else None for img in inputs]
        bad = [i for i, s in enumerate(shapes) if s is None or len(s) != 3 or s[0] != 3]
        if bad:
            raise ValueError(f'FaceDataPreprocessor: {name}[{bad[0]}] must be a [3, H, W] tensor, '
                             f'got {shapes[bad[0]] or type(inputs[bad[0]]).__name__}')
        sizes = sorted(set(shapes))
        if len(sizes) > 1:
            raise ValueError(f'FaceDataPreprocessor: all images of {name} must share one size '
                             f'(aligned crops), got shapes {sizes}')
        return torch.stack(list(inputs))

