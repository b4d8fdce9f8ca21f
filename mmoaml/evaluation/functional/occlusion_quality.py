"""Quality of predicted visibility maps against ground truth on the feature-map grid.

Pure functions for scoring an occlusion head on a benchmark that ships ground-truth visibility
(e.g. the ``<stem>_masks_7x7.npz`` files written by ``mmoaml.datagen.occluded_benchmark``).
Both inputs are ``[N, 1, h, w]`` in ``[0, 1]`` with mmoaml's convention: 1 = visible face,
0 = covered by an occluder or not face. The ground truth is the pixel mask area-averaged to the
grid (:func:`mmoaml.structures.area_downsample`), so its cells hold visible fractions.

Binarisation (for :func:`visibility_iou`): a cell is *visible* iff its value is
``>= threshold`` and *hidden* (occluded or not face) iff it is ``< threshold``, for the
prediction and the ground truth alike.
"""
from typing import Union

import numpy as np
import torch

__all__ = ['visibility_mse', 'visibility_iou', 'mean_visibility', 'visibility_summary']

ArrayLike = Union[np.ndarray, torch.Tensor]
_REGIONS = ('hidden', 'visible')


def _as_grid(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as float64 ``[N, 1, h, w]``, checked to be finite and within ``[0, 1]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 4 or a.shape[1] != 1 or a.shape[0] == 0:
        raise ValueError(f'{name} must be a non-empty [N, 1, h, w] visibility map, got shape '
                         f'{a.shape}')
    if not np.isfinite(a).all():
        raise ValueError(f'{name} contains {int((~np.isfinite(a)).sum())} non-finite values')
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f'{name} must lie in [0, 1] (1 = visible), got values in '
                         f'[{a.min():g}, {a.max():g}]')
    return a


def _pair(pred: ArrayLike, gt: ArrayLike):
    p, g = _as_grid(pred, 'pred'), _as_grid(gt, 'gt')
    if p.shape != g.shape:
        raise ValueError(f'pred and gt must have the same shape, got {p.shape} and {g.shape}')
    return p, g


def visibility_mse(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean squared error over every cell of every map.

    The quantity the occlusion loss minimises (OAML report: MSE between the predicted map and
    the area-downsampled ground truth), averaged over ``N * h * w`` cells.

    Args:
        pred (np.ndarray | Tensor): ``[N, 1, h, w]`` predicted visibility in ``[0, 1]``.
        gt (np.ndarray | Tensor): ``[N, 1, h, w]`` ground-truth visibility in ``[0, 1]``.

    Returns:
        float: the mean of ``(pred - gt) ** 2``.
    """
    p, g = _pair(pred, gt)
    return float(np.mean((p - g)**2))


def visibility_iou(pred: ArrayLike,
                   gt: ArrayLike,
                   threshold: float = 0.5,
                   region: str = 'hidden') -> float:
    """Intersection over union of the binarised hidden (default) or visible cells.

    Cells are binarised with ``threshold`` (module docstring: hidden iff ``value <
    threshold``). The IoU is pooled over the whole set: ``|A & B| / |A | B|`` with ``A`` and
    ``B`` the predicted and true cells of ``region`` across all ``N`` maps. Pooling (rather than
    a mean of per-map IoUs) keeps clean faces, which may have no hidden cell at all, from
    making the score undefined; they still count through their false positives.

    ``region='hidden'`` (default) measures what the occlusion head exists for, finding the
    covered cells; at 7x7 the face prior alone already marks the border cells hidden, so the
    score on clean faces is that of the face outline. ``region='visible'`` scores the
    complement.

    Args:
        pred (np.ndarray | Tensor): ``[N, 1, h, w]`` predicted visibility in ``[0, 1]``.
        gt (np.ndarray | Tensor): ``[N, 1, h, w]`` ground-truth visibility in ``[0, 1]``.
        threshold (float): binarisation threshold in ``(0, 1]``. Defaults to 0.5 (a cell is
            hidden when less than half of it is visible face).
        region (str): ``'hidden'`` or ``'visible'``. Defaults to ``'hidden'``.

    Returns:
        float: the IoU in ``[0, 1]``; 1.0 when neither map has a cell of ``region`` (perfect
        agreement on an empty region).
    """
    if region not in _REGIONS:
        raise ValueError(f'region must be one of {_REGIONS}, got {region!r}')
    if not 0 < threshold <= 1:
        raise ValueError(f'threshold must lie in (0, 1], got {threshold}')
    p, g = _pair(pred, gt)
    a, b = p < threshold, g < threshold
    if region == 'visible':
        a, b = ~a, ~b
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def mean_visibility(vis: ArrayLike) -> float:
    """Mean visible fraction over every cell of every map.

    Args:
        vis (np.ndarray | Tensor): ``[N, 1, h, w]`` visibility in ``[0, 1]``.

    Returns:
        float: the mean cell value (for an area-averaged ground truth: the visible share of the
        image area).
    """
    return float(np.mean(_as_grid(vis, 'vis')))


def visibility_summary(pred: ArrayLike, gt: ArrayLike) -> dict:
    """The occlusion head's figures on one set of maps.

    Args:
        pred (np.ndarray | Tensor): ``[N, 1, h, w]`` predicted visibility in ``[0, 1]``.
        gt (np.ndarray | Tensor): ``[N, 1, h, w]`` ground-truth visibility in ``[0, 1]``.

    Returns:
        dict: ``mean_pred`` and ``mean_gt`` (:func:`mean_visibility`), ``mse``
        (:func:`visibility_mse`) and ``iou_hidden`` (:func:`visibility_iou` of the hidden cells
        at 0.5).
    """
    return dict(mean_pred=mean_visibility(pred), mean_gt=mean_visibility(gt),
                mse=visibility_mse(pred, gt), iou_hidden=visibility_iou(pred, gt))
