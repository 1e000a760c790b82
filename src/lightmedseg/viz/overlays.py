"""Figures for readers of the paper: overlays like Figures 2-3, and the learned anchors S with texture map T.

Everything uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so it
works headless and inside notebooks alike. Arrays follow the package convention: images (C, Z, Y, X) or
(Z, Y, X), labels (Z, Y, X), spacing (sz, sy, sx) in mm; slices are shown with voxel (0, 0) at the lower
left and the physical aspect ratio from the spacing. PNGs are written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from lightmedseg.config import typed_config
from lightmedseg.io_utils import atomic_path
from lightmedseg.model.network import PAPER_SIZE_DIVISOR

# Fixed colour per class index (not per value) so GT and prediction always agree; index 0 is transparent.
CLASS_COLOURS = ["#000000", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]
AXIS_NAMES = ("axial (z)", "coronal (y)", "sagittal (x)")


class FigureError(ValueError):
    """Arrays that cannot be drawn together (shape mismatch, slice out of range)."""


@dataclass
class OverlayCase:
    """One row of an overlay figure."""

    image: np.ndarray  # (C, Z, Y, X) or (Z, Y, X)
    label: np.ndarray | None  # (Z, Y, X) ground truth, dataset values
    pred: np.ndarray | None  # (Z, Y, X) prediction, dataset values
    name: str = ""
    spacing: Sequence[float] = (1.0, 1.0, 1.0)
    slice_index: int | None = None  # None: the slice with most foreground (label, else prediction)


def _as_3d(image: np.ndarray, channel: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 4:
        if not 0 <= channel < image.shape[0]:
            raise FigureError(f"channel {channel} not in image with {image.shape[0]} channels")
        return image[channel]
    if image.ndim != 3:
        raise FigureError(f"image must be (C, Z, Y, X) or (Z, Y, X), got shape {image.shape}")
    return image


def pick_slices(mask_source: np.ndarray | None, axis: int = 0, n: int = 1, shape: Sequence[int] | None = None) -> list[int]:
    """The ``n`` slices along ``axis`` with the most foreground (ties -> lower index); the middle slice if none."""
    if mask_source is None or not np.any(mask_source):
        size = (shape or mask_source.shape)[axis]
        return [size // 2]
    other = tuple(a for a in range(3) if a != axis)
    counts = np.count_nonzero(np.asarray(mask_source), axis=other)
    order = np.argsort(-counts, kind="stable")
    return sorted(int(i) for i in order[:n])


def foreground_box(labels: np.ndarray | None, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   margin_mm: float = 10.0) -> tuple[slice, slice, slice]:
    """The (z, y, x) slices of the bounding box of ``labels != 0`` grown by ``margin_mm`` on every side (at least
    one voxel), clipped to the volume; the whole volume when ``labels`` is None or empty."""
    if labels is None:
        raise FigureError("foreground_box: no label map given")
    labels = np.asarray(labels)
    nonzero = np.argwhere(labels != 0)
    if nonzero.size == 0:
        return tuple(slice(0, n) for n in labels.shape)  # type: ignore[return-value]
    lo, hi = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    grow = [max(1, int(np.ceil(margin_mm / float(s)))) for s in spacing]
    return tuple(slice(max(0, int(a) - g), min(n, int(b) + g))  # type: ignore[return-value]
                 for a, b, g, n in zip(lo, hi, grow, labels.shape))


def _take(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    # Rows of the displayed slice run along the first remaining axis; transpose so it is the vertical one.
    return np.take(arr, index, axis=axis)


def _aspect(spacing: Sequence[float], axis: int) -> float:
    rows, cols = [s for a, s in enumerate(spacing) if a != axis]
    return float(rows) / float(cols)


def _class_index_map(values: Sequence[int]) -> dict[int, int]:
    return {int(v): i for i, v in enumerate(sorted({0, *map(int, values)}))}


def _overlay(ax, img2d: np.ndarray, lab2d: np.ndarray | None, index_of: Mapping[int, int], aspect: float, alpha: float) -> None:
    lo, hi = np.percentile(img2d, [0.5, 99.5]) if img2d.size else (0, 1)
    ax.imshow(img2d, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower", aspect=aspect,
              interpolation="nearest")
    if lab2d is not None:
        keys = np.asarray(sorted(index_of))
        idx = np.asarray([index_of[int(k)] for k in keys])[np.clip(np.searchsorted(keys, lab2d), 0, len(keys) - 1)]
        n = max(index_of.values()) + 1
        cmap = ListedColormap([CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(n)])
        ax.imshow(np.ma.masked_equal(idx, 0), cmap=cmap, vmin=0, vmax=n - 1, alpha=alpha, origin="lower",
                  aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, out_png: str | os.PathLike) -> Path:
    out_png = Path(out_png)
    FigureCanvasAgg(fig)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(str(tmp), format="png", dpi=fig.dpi, bbox_inches="tight")
    return out_png


def save_cases_figure(
    cases: Sequence[OverlayCase],
    out_png: str | os.PathLike,
    axis: int = 0,
    channel: int = 0,
    class_names: Mapping[int, str] | None = None,
    alpha: float = 0.5,
    title: str | None = None,
) -> Path:
    """Paper-style grid: one row per case (image | ground truth | prediction) on its most-foreground slice."""
    if not cases:
        raise FigureError("no cases to draw")
    rows = []
    values: set[int] = set()
    for c in cases:
        img = _as_3d(c.image, channel)
        for what, arr in (("label", c.label), ("prediction", c.pred)):
            if arr is not None and np.asarray(arr).shape != img.shape:
                raise FigureError(f"{c.name or 'case'}: {what} shape {np.asarray(arr).shape} differs from image {img.shape}")
            if arr is not None:
                values |= set(np.unique(arr).tolist())
        src = c.label if c.label is not None and np.any(c.label) else c.pred
        index = c.slice_index if c.slice_index is not None else pick_slices(src, axis, 1, img.shape)[0]
        if not 0 <= index < img.shape[axis]:
            raise FigureError(f"{c.name or 'case'}: slice {index} out of range 0..{img.shape[axis] - 1} along axis {axis}")
        rows.append((c, img, index))
    index_of = _class_index_map(values)
    ncols = 1 + sum(x is not None for x in (cases[0].label, cases[0].pred))
    fig = Figure(figsize=(3.0 * ncols, 3.0 * len(rows)), dpi=100)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (c, img, s) in enumerate(rows):
        aspect = _aspect(c.spacing, axis)
        panels = [("Image", None)] + [(t, a) for t, a in (("Ground truth", c.label), ("Prediction", c.pred)) if a is not None]
        for k, (name, lab) in enumerate(panels[:ncols]):
            _overlay(axes[r][k], _take(img, axis, s), None if lab is None else _take(np.asarray(lab), axis, s),
                     index_of, aspect, alpha)
            if r == 0:
                axes[r][k].set_title(name)
        # one short line per row (name, then the slice): long labels on short cropped rows ran into each other
        axes[r][0].set_ylabel(f"{c.name}\n{AXIS_NAMES[axis].split()[0]} {s}".strip(), fontsize=9)
    if class_names or len(index_of) > 1:
        from matplotlib.patches import Patch

        handles = [Patch(color=CLASS_COLOURS[i % len(CLASS_COLOURS)], label=(class_names or {}).get(v, str(v)))
                   for v, i in index_of.items() if i]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def save_overlay_figure(
    image: np.ndarray,
    label: np.ndarray | None,
    pred: np.ndarray | None,
    out_png: str | os.PathLike,
    slices: Sequence[int] | None = None,
    n_slices: int = 1,
    axis: int = 0,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    channel: int = 0,
    class_names: Mapping[int, str] | None = None,
    title: str | None = None,
    crop_margin_mm: float | None = None,
) -> Path:
    """Image, ground truth and prediction of one case on chosen ``slices`` or the ``n_slices`` with most foreground.

    ``crop_margin_mm``: crop every panel to the foreground box (ground truth, else prediction) grown by this
    margin (:func:`foreground_box`), within the slices (``slices`` keep indexing the volume). None: the whole slice.
    """
    img = _as_3d(image, channel)
    if crop_margin_mm is not None:
        src = label if label is not None and np.any(label) else pred
        if src is not None:
            box = list(foreground_box(src, spacing, crop_margin_mm))
            box[axis] = slice(None)  # crop within the slices only, so slice numbers stay the volume's
            box = tuple(box)
            img = img[box]
            label = None if label is None else np.asarray(label)[box]
            pred = None if pred is None else np.asarray(pred)[box]
    if slices is None:
        src = label if label is not None and np.any(label) else pred
        slices = pick_slices(src, axis, n_slices, img.shape)
    cases = [OverlayCase(img, label, pred, spacing=spacing, slice_index=int(s)) for s in slices]  # one row per slice
    return save_cases_figure(cases, out_png, axis=axis, class_names=class_names, title=title)


# -- anchors and texture ----------------------------------------------------------------------------------

def _window_start(center: Sequence[int], size: Sequence[int], shape: Sequence[int]) -> list[int]:
    return [int(min(max(c - s // 2, 0), max(n - s, 0))) for c, s, n in zip(center, size, shape)]


@torch.inference_mode()
def anchors_and_texture(
    model: torch.nn.Module, image: np.ndarray, roi_size: Sequence[int] = (128, 128, 128),
    center: Sequence[int] | None = None, device: str | torch.device = "cpu",
) -> dict:
    """Run the model on one ROI window (what a sliding-window step sees) and return what it learned.

    ``image`` is a preprocessed (C, Z, Y, X) array. The window (padded to multiples of the model's
    ``size_divisor``) is centred on
    ``center`` (default: the volume centre). Returns ``window`` (C, D, H, W) numpy, ``anchors_vox``
    (K, 3) anchor positions in window voxels (z, y, x) or None, ``texture`` (D, H, W) upsampled T or None,
    ``start`` (window origin in the volume), ``size`` and ``focus`` (``center`` in window voxels).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise FigureError(f"image must be (C, Z, Y, X), got shape {image.shape}")
    shape = image.shape[1:]
    divisor = getattr(model, "size_divisor", PAPER_SIZE_DIVISOR)
    size = [min(int(r), -(-s // m) * m) for r, s, m in zip(roi_size, shape, divisor)]
    center = [s // 2 for s in shape] if center is None else list(center)
    start = _window_start(center, size, shape)
    crop = image[(slice(None),) + tuple(slice(a, a + s) for a, s in zip(start, size))]
    pads = [(0, s - c) for s, c in zip(size, crop.shape[1:])]
    window = np.pad(crop, [(0, 0)] + pads)
    x = torch.as_tensor(window, device=device)[None]
    model = model.to(device).eval()
    _, extras = model.forward_with_intermediates(x)
    anchors = extras.get("anchors")
    texture = extras.get("texture")
    anchors_vox = None
    if anchors is not None:
        # Anchors are normalised (d, h, w) in [0, 1] over the window (paper Eq. 1).
        anchors_vox = anchors[0].float().cpu().numpy() * (np.asarray(size, dtype=np.float64) - 1)
    tex = None
    if texture is not None:
        tex = F.interpolate(texture.float(), size=size, mode="trilinear", align_corners=False)[0, 0].cpu().numpy()
    focus = [int(min(max(c - a, 0), s - 1)) for c, a, s in zip(center, start, size)]
    return {"window": window, "anchors_vox": anchors_vox, "texture": tex, "start": start, "size": size, "focus": focus}


def save_anchor_texture_figure(
    model: torch.nn.Module,
    image: np.ndarray,
    out_png: str | os.PathLike,
    label: np.ndarray | None = None,
    config: Mapping | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    channel: int = 0,
    device: str | torch.device = "cpu",
    title: str | None = None,
) -> Path:
    """Learned anchors S (markers, projected onto three orthogonal slices) and texture map T on one case.

    ``image`` is the raw (C, Z, Y, X) case; with ``config`` it is preprocessed the model's way (and the ROI
    is the config's window, ``infer.roi_size``). The window is centred on the label's foreground when given.
    Row 1: image with anchors (and the label outline); row 2: T in [0, 1] with anchors. Slices pass through
    the label's foreground centroid (else the window centre).
    """
    from lightmedseg.data.preprocess import preprocess_image

    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[None]
    info = None
    if config is not None:
        image, info = preprocess_image(image, typed_config(config).data)
        if label is not None:
            label = np.asarray(label)[tuple(slice(s, e) for s, e in zip(info.bbox_start, info.bbox_end))]
    if label is not None and np.asarray(label).shape != image.shape[1:]:
        raise FigureError(f"label shape {np.asarray(label).shape} differs from image {image.shape[1:]}")
    roi = typed_config(config or {}).window
    center = None
    if label is not None and np.any(label):
        center = [int(round(c)) for c in np.argwhere(np.asarray(label) > 0).mean(axis=0)]
    out = anchors_and_texture(model, image, roi, center, device)
    win = out["window"][channel]
    mid = out["focus"]
    lab_win = None
    if label is not None:
        lab_win = np.zeros(out["size"], dtype=bool)
        src = np.asarray(label)[tuple(slice(a, a + s) for a, s in zip(out["start"], out["size"]))] > 0
        lab_win[tuple(slice(0, n) for n in src.shape)] = src
    fig = Figure(figsize=(10.5, 7.0), dpi=100)
    axes = fig.subplots(2, 3, squeeze=False)
    for axis in range(3):
        aspect = _aspect(spacing, axis)
        rest = [a for a in range(3) if a != axis]  # displayed (rows, cols) axes
        for row in range(2):
            ax = axes[row][axis]
            if row == 0:
                _overlay(ax, _take(win, axis, mid[axis]), None, {0: 0}, aspect, 0.0)
                if lab_win is not None and _take(lab_win, axis, mid[axis]).any():
                    ax.contour(_take(lab_win, axis, mid[axis]).astype(float), levels=[0.5], colors="#ffe119",
                               linewidths=1.0, origin="lower")
            elif out["texture"] is not None:
                im = ax.imshow(_take(out["texture"], axis, mid[axis]), cmap="magma", vmin=0, vmax=1,
                               origin="lower", aspect=aspect, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if axis == 2:
                    fig.colorbar(im, ax=ax, fraction=0.046, label="texture T")
            else:
                ax.text(0.5, 0.5, "no LSPM: no texture map", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            if out["anchors_vox"] is not None:
                pts = out["anchors_vox"]
                ax.scatter(pts[:, rest[1]], pts[:, rest[0]], s=40, c="#00e5ff", marker="x", linewidths=1.5)
                for k, p in enumerate(pts):
                    ax.annotate(str(k), (p[rest[1]], p[rest[0]]), color="#00e5ff", fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        axes[0][axis].set_title(f"{AXIS_NAMES[axis]} slice {mid[axis]}")
    k = 0 if out["anchors_vox"] is None else len(out["anchors_vox"])
    fig.suptitle(title or (f"learned anchors S (K={k}, projected) and texture map T; window {out['size']} at {out['start']}"
                           if k else "model without anchors; texture map T"))
    return _save(fig, out_png)
