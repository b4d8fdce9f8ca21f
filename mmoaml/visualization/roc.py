"""ROC curves of verification scores: TAR against FAR on a log FAR axis, one curve per score.

Drawn with matplotlib's Agg canvas on a ``Figure`` of its own (no ``pyplot``, no global backend
switch), so drawing works headless and changes nothing for a host project. The image is
returned as an RGB ``uint8`` array, the convention of MMEngine's ``Visualizer`` (e.g.
``visualizer.add_image('roc_lfw', image)``); :func:`save_roc_curves` writes it as a PNG.
"""
from typing import Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmoaml.evaluation.functional.verification import roc_auc, roc_curve

__all__ = ['draw_roc_curves', 'save_roc_curves']

#: Order and colours of the score types (other names follow in the given order).
_COLOURS = dict(adaface='tab:blue', qaconv='tab:orange', qaconv_gt='tab:green',
                qaconv_none='tab:gray', combined='tab:red')


def draw_roc_curves(scores: Mapping[str, Sequence[float]],
                    issame: Sequence[bool],
                    title: Optional[str] = None,
                    far_marks: Sequence[float] = (),
                    size: Tuple[int, int] = (640, 480),
                    dpi: int = 100) -> np.ndarray:
    """Draw TAR against FAR, one curve per score type, with a log FAR axis.

    FAR = 0 cannot be placed on a log axis: the axis starts at the smallest non-zero FAR,
    ``1 / num_impostors``, and a curve's points at FAR = 0 are left out (its first drawn
    point carries the TAR reached there). The legend gives each score type's ROC AUC.

    Args:
        scores (Mapping[str, Sequence[float]]): score type (e.g. ``'adaface'``, ``'qaconv'``)
            -> ``[N]`` pair scores, higher = more similar.
        issame (Sequence[bool]): ``[N]`` pair labels, both classes present.
        title (str, optional): Title of the plot, e.g. the set's name. Defaults to None.
        far_marks (Sequence[float]): FARs marked by dashed vertical lines (e.g. the metric's
            TAR@FAR targets). Defaults to none.
        size (tuple[int, int]): ``(width, height)`` of the image in pixels. Defaults to
            ``(640, 480)``.
        dpi (int): Resolution of the text and lines. Defaults to 100.

    Returns:
        np.ndarray: ``height x width x 3`` uint8 RGB image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not scores:
        raise ValueError('draw_roc_curves needs at least one score type')
    width, height = (int(v) for v in size)
    if width < 1 or height < 1 or dpi < 1:
        raise ValueError(f'size and dpi must be positive, got {size} and {dpi}')
    labels = np.asarray(issame, dtype=bool)
    num_impostors = int(np.count_nonzero(~labels))
    if num_impostors == 0 or num_impostors == labels.size:
        raise ValueError('draw_roc_curves needs both genuine and impostor pairs')
    lowest = 1.0 / num_impostors

    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ordered = [t for t in _COLOURS if t in scores] + [t for t in scores if t not in _COLOURS]
    for score_type in ordered:
        fpr, tpr = roc_curve(scores[score_type], labels)
        keep = fpr > 0
        auc = roc_auc(scores[score_type], labels)
        axes.step(fpr[keep], tpr[keep], where='post', color=_COLOURS.get(score_type),
                  label=f'{score_type} (AUC {auc:.4f})')
    for far in far_marks:
        if lowest <= far <= 1:
            axes.axvline(far, color='black', linestyle='--', linewidth=0.8)
    axes.set_xscale('log')
    axes.set_xlim(lowest, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel('FAR (false accept rate)')
    axes.set_ylabel('TAR (true accept rate)')
    axes.grid(True, which='both', alpha=0.3)
    axes.legend(loc='lower right', fontsize='small')
    if title:
        axes.set_title(f'{title}: {labels.size} pairs, {num_impostors} impostors')
    figure.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def save_roc_curves(path: str, scores: Mapping[str, Sequence[float]], issame: Sequence[bool],
                    **kwargs) -> np.ndarray:
    """Draw :func:`draw_roc_curves` and write it to ``path`` (PNG by its extension).

    Args:
        path (str): Output image file, e.g. ``<show_dir>/roc_<set>.png``.
        scores (Mapping[str, Sequence[float]]): Score type -> ``[N]`` pair scores.
        issame (Sequence[bool]): ``[N]`` pair labels.
        **kwargs: ``title``, ``far_marks``, ``size``, ``dpi`` of :func:`draw_roc_curves`.

    Returns:
        np.ndarray: The RGB image that was written.
    """
    image = draw_roc_curves(scores, issame, **kwargs)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write the ROC image {path}')
    return image
