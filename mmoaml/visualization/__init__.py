from .visibility_overlay import draw_visibility_grid, overlay_visibility

__all__ = ['draw_visibility_grid', 'overlay_visibility']
