"""``predict --preview``: one PNG per case to check a segmentation at a glance.

The panels are cropped to the segmented region (:func:`lightmedseg.viz.overlays.foreground_box`, grown by
:data:`PREVIEW_MARGIN_MM`), so the structure fills them instead of ~10 % of a full slice. Columns are up to
:data:`PREVIEW_SLICES` axial slices spread over the segmented slices, each titled with its slice number; the
top row is the image, the bottom row the prediction over it; the two row names sit on the first column only
and the label names in one legend below, so no text overlaps. The figure title is the case name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lightmedseg.viz.overlays import CLASS_COLOURS, _as_3d, _class_index_map, _overlay, _save, foreground_box

PREVIEW_MARGIN_MM = 15.0  # around the segmented region: enough context to judge the boundary
PREVIEW_SLICES = 4  # columns: axial slices evenly spread over the segmented ones
PANEL_INCHES = 2.4  # width of one panel


def preview_slices(labels: np.ndarray, n: int = PREVIEW_SLICES) -> list[int]:
    """Up to ``n`` axial (z) slice indices evenly spread between the first and last slice holding foreground
    (the middle slice when there is none)."""
    zs = np.flatnonzero(np.asarray(labels).reshape(labels.shape[0], -1).any(axis=1))
    if zs.size == 0:
        return [labels.shape[0] // 2]
    return sorted({int(round(z)) for z in np.linspace(zs[0], zs[-1], min(n, zs.size))})


def save_preview(
    image: np.ndarray,
    labels: np.ndarray,
    out_png: str | os.PathLike,
    names: Mapping[int, str] | None = None,
    case_id: str = "",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    margin_mm: float = PREVIEW_MARGIN_MM,
    n_slices: int = PREVIEW_SLICES,
    channel: int = 0,
    alpha: float = 0.45,
) -> Path:
    """Write the preview of one case (image ``(C, Z, Y, X)`` or ``(Z, Y, X)``, labels ``(Z, Y, X)``) to ``out_png``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    img = _as_3d(image, channel)
    labels = np.asarray(labels)
    box = foreground_box(labels, spacing, margin_mm)
    img, lab = img[box], labels[box]
    slices = preview_slices(lab, n_slices)
    index_of = _class_index_map(list((names or {}).keys()) + np.unique(lab).tolist())
    sz, sy, sx = (float(s) for s in spacing)
    aspect = sy / sx
    height = PANEL_INCHES * lab.shape[1] * sy / max(lab.shape[2] * sx, 1e-6)
    fig = Figure(figsize=(PANEL_INCHES * len(slices), 2 * height + 1.2), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(slices), squeeze=False)
    z0 = box[0].start
    for k, z in enumerate(slices):
        _overlay(axes[0][k], img[z], None, index_of, aspect, alpha)
        _overlay(axes[1][k], img[z], lab[z], index_of, aspect, alpha)
        axes[0][k].set_title(f"slice {z0 + z}", fontsize=9)
    axes[0][0].set_ylabel("image", fontsize=9)
    axes[1][0].set_ylabel("prediction", fontsize=9)
    present = {int(v) for v in np.unique(lab)}
    handles = [Patch(color=CLASS_COLOURS[i % len(CLASS_COLOURS)], label=(names or {}).get(v, str(v)))
               for v, i in index_of.items() if i and v in present]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False, fontsize=9)
    if case_id:
        fig.suptitle(case_id if handles else f"{case_id} (no foreground)", fontsize=10)
    return _save(fig, out_png)


__all__ = ["PREVIEW_MARGIN_MM", "PREVIEW_SLICES", "preview_slices", "save_preview", "foreground_box"]
