"""Reading the ground truth of a batch of ``DataSample``s, with errors that name the sample."""
from typing import Optional, Sequence

import torch

from .fields import GT_LABEL, GT_VISIBILITY


def _check_samples(data_samples: Optional[Sequence], batch: int, key: str, name: str) -> None:
    if data_samples is None or len(data_samples) != batch:
        count = None if data_samples is None else len(data_samples)
        raise ValueError(f'{name} must hold one data sample with {key} per image ({batch}), got '
                         f'{count}')
    for i, sample in enumerate(data_samples):
        if key not in sample:
            raise ValueError(f'{name}[{i}] has no {key}')


def stack_labels(data_samples: Optional[Sequence], batch: int,
                 name: str = 'data_samples') -> torch.Tensor:
    """Identity labels of a batch.

    Args:
        data_samples (Sequence[DataSample]): One sample with a single ``gt_label`` per image.
        batch (int): Number of images ``B``.
        name (str): How the error messages call the sequence. Defaults to ``'data_samples'``.

    Returns:
        Tensor: int64 ``[B]``.
    """
    _check_samples(data_samples, batch, GT_LABEL, name)
    labels = torch.cat([sample.gt_label.view(-1) for sample in data_samples])
    if labels.shape != (batch, ):
        raise ValueError(f'{name}: each data sample needs a single {GT_LABEL}, got '
                         f'{labels.numel()} labels for {batch} images')
    return labels.long()


def stack_gt_visibility(data_samples: Optional[Sequence], batch: int,
                        name: str = 'data_samples') -> torch.Tensor:
    """Ground-truth pixel visibility of a batch (``PackFaceInputs`` writes it).

    Args:
        data_samples (Sequence[DataSample]): One sample with ``gt_visibility`` ``[1, H, W]``
            per image.
        batch (int): Number of images ``B``.
        name (str): How the error messages call the sequence. Defaults to ``'data_samples'``.

    Returns:
        Tensor: ``[B, 1, H, W]``.
    """
    _check_samples(data_samples, batch, GT_VISIBILITY, name)
    return torch.stack([sample.gt_visibility for sample in data_samples])
