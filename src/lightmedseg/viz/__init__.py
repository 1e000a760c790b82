"""Figures: overlays like the paper's Figures 2-3, and the learned anchors with the texture map T."""

from lightmedseg.viz.case_figures import save_case_figures
from lightmedseg.viz.overlays import (
    FigureError, OverlayCase, anchors_and_texture, pick_slices, save_anchor_texture_figure, save_cases_figure,
    save_overlay_figure,
)

__all__ = [
    "FigureError", "OverlayCase", "anchors_and_texture", "pick_slices", "save_anchor_texture_figure",
    "save_cases_figure", "save_overlay_figure", "save_case_figures",
]
