from .roc import draw_roc_curves, save_roc_curves
from .visibility_overlay import draw_visibility_grid, overlay_visibility

__all__ = ['draw_roc_curves', 'draw_visibility_grid', 'overlay_visibility', 'save_roc_curves']
