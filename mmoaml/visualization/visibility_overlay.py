"""Visibility maps drawn over face crops: one tile per face, tiles on a grid."""
import math
from typing import Optional, Sequence

import cv2
import numpy as np

__all__ = ['draw_visibility_grid', 'overlay_visibility']

#: BGR tint of a fully visible (1) and a fully hidden (0) cell; values in between are blended.
VISIBLE_BGR = (0, 200, 0)
HIDDEN_BGR = (0, 0, 255)


def overlay_visibility(image_bgr: np.ndarray, visibility: np.ndarray,
                       alpha: float = 0.45) -> np.ndarray:
    """Tint a face crop by a visibility map: green where visible, red where hidden.

    The map is resized to the image with nearest-neighbour interpolation when it is coarser
    (each cell stays a sharp block, so a 7x7 map shows its cells) and by area averaging when it
    is finer.

    Args:
        image_bgr (np.ndarray): ``H x W x 3`` uint8, BGR.
        visibility (np.ndarray): ``h x w`` (or ``1 x h x w``) in ``[0, 1]``, 1 = visible face.
        alpha (float): Opacity of the tint. Defaults to 0.45.

    Returns:
        np.ndarray: ``H x W x 3`` uint8 BGR.
    """
    image = _check_image(image_bgr, 'image_bgr')
    vis = _check_map(visibility, 'visibility')
    if not 0 <= alpha <= 1:
        raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
    height, width = image.shape[:2]
    coarser = vis.shape[0] <= height and vis.shape[1] <= width
    vis = cv2.resize(vis, (width, height),
                     interpolation=cv2.INTER_NEAREST if coarser else cv2.INTER_AREA)
    vis = np.clip(vis, 0.0, 1.0)[..., None]
    tint = vis * np.float32(VISIBLE_BGR) + (1 - vis) * np.float32(HIDDEN_BGR)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * tint
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_visibility_grid(images_bgr: Sequence[np.ndarray],
                         visibility: Sequence[np.ndarray],
                         gt: Optional[Sequence[np.ndarray]] = None,
                         ncols: int = 8,
                         pad: int = 2,
                         alpha: float = 0.45) -> np.ndarray:
    """Draw faces with their predicted (and ground-truth) visibility maps on a grid.

    Each tile is :func:`overlay_visibility` of one face; with ``gt`` a tile is the prediction
    overlay and, to its right, the ground-truth overlay. Tiles fill ``ncols`` columns row by
    row, separated by ``pad`` black pixels; unused places of the last row stay black.

    Args:
        images_bgr (Sequence[np.ndarray]): Faces, ``H x W x 3`` uint8 BGR, all of one size.
        visibility (Sequence[np.ndarray]): One predicted map per face, ``h x w`` in ``[0, 1]``
            (1 = visible face), e.g. the 7x7 output of the occlusion head.
        gt (Sequence[np.ndarray], optional): One ground-truth map per face, any ``h x w`` (pixel
            masks or grid cells). Defaults to None.
        ncols (int): Tiles per row. Defaults to 8.
        pad (int): Pixels between tiles and around the grid. Defaults to 2.
        alpha (float): Opacity of the tint. Defaults to 0.45.

    Returns:
        np.ndarray: The grid, uint8 BGR (write it with ``cv2.imwrite``).

    Examples:
        >>> import numpy as np
        >>> faces = [np.full((112, 112, 3), 128, np.uint8)] * 3
        >>> maps = [np.ones((7, 7), np.float32)] * 3
        >>> draw_visibility_grid(faces, maps, ncols=2).shape
        (230, 230, 3)
    """
    if not len(images_bgr):
        raise ValueError('draw_visibility_grid: no images')
    if len(visibility) != len(images_bgr) or (gt is not None and len(gt) != len(images_bgr)):
        raise ValueError(f'draw_visibility_grid: {len(images_bgr)} images, {len(visibility)} '
                         f'visibility maps and {"no" if gt is None else len(gt)} gt maps; '
                         'need one map per image')
    if not isinstance(ncols, int) or ncols < 1 or not isinstance(pad, int) or pad < 0:
        raise ValueError(f'ncols must be a positive int and pad a non-negative int, got '
                         f'{ncols!r} and {pad!r}')
    size = _check_image(images_bgr[0], 'images_bgr[0]').shape
    tiles = []
    for i, image in enumerate(images_bgr):
        if _check_image(image, f'images_bgr[{i}]').shape != size:
            raise ValueError(f'draw_visibility_grid: images_bgr[{i}] is {image.shape}, '
                             f'images_bgr[0] is {size}; all faces must have one size')
        tile = overlay_visibility(image, visibility[i], alpha)
        if gt is not None:
            tile = np.concatenate([tile, overlay_visibility(image, gt[i], alpha)], axis=1)
        tiles.append(tile)
    tile_h, tile_w = tiles[0].shape[:2]
    ncols = min(ncols, len(tiles))
    nrows = math.ceil(len(tiles) / ncols)
    grid = np.zeros((nrows * (tile_h + pad) + pad, ncols * (tile_w + pad) + pad, 3), np.uint8)
    for i, tile in enumerate(tiles):
        top = pad + (i // ncols) * (tile_h + pad)
        left = pad + (i % ncols) * (tile_w + pad)
        grid[top:top + tile_h, left:left + tile_w] = tile
    return grid


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{name} must be an H x W x 3 uint8 BGR image, got {image.dtype} '
                         f'{image.shape}')
    return image


def _check_map(vis: np.ndarray, name: str) -> np.ndarray:
    vis = np.asarray(vis, dtype=np.float32)
    if vis.ndim == 3 and vis.shape[0] == 1:
        vis = vis[0]
    if vis.ndim != 2 or min(vis.shape) == 0:
        raise ValueError(f'{name} must be an h x w map (or 1 x h x w), got shape {vis.shape}')
    return vis
