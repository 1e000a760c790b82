"""Dice and HD95 of one binary mask pair, in the two documented evaluation modes.

``strict``   Dice and HD95 as a clinician would read them: HD95 in mm from the header spacing, taken as
             MONAI's symmetric 95th-percentile Hausdorff distance (max of the two directed 95th
             percentiles of the surface distances); both masks empty -> NaN for both metrics (excluded
             from means); exactly one empty -> Dice 0 and HD95 = the image diagonal in mm (a stated,
             finite worst case).
``nnformer`` Reproduces the nnFormer / UNETR++ evaluation scripts (``inference_tumor.py``,
             ``ACDC_dice/inference.py``), whose numbers the paper's Tables 1-2 follow: Dice 1 when both
             masks are empty; HD95 = medpy's ``binary.hd95`` without spacing, i.e. the 95th percentile of
             the *pooled* surface distances of both directions, in voxels, and 0 when either mask is empty.

Surface extraction and distances come from MONAI (:func:`monai.metrics.utils.get_edge_surface_distance`,
which uses the same one-voxel erosion border as medpy); only the pooling/empty-mask rules are ours.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.metrics.utils import get_edge_surface_distance

Mode = Literal["strict", "nnformer"]
MODES: tuple[str, ...] = ("strict", "nnformer")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known evaluation mode, else raise a ValueError naming the choices."""
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; expected one of {list(MODES)}")
    return mode


def _as_bool_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).bool()


def dice_score(pred: np.ndarray, ref: np.ndarray, mode: Mode = "strict") -> float:
    """Dice of two binary masks; both empty -> NaN (strict) or 1.0 (nnformer)."""
    check_mode(mode)
    p, r = _as_bool_tensor(pred), _as_bool_tensor(ref)
    if p.shape != r.shape:
        raise ValueError(f"dice_score: mask shapes differ ({tuple(p.shape)} vs {tuple(r.shape)})")
    if not p.any() and not r.any():
        return math.nan if mode == "strict" else 1.0
    # MONAI wants one-hot (B, C, ...) tensors; a single foreground channel without background.
    value = compute_dice(p[None, None].float(), r[None, None].float(), include_background=True, ignore_empty=False)
    return float(value.item())


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of the image box: the strict-mode HD95 penalty for a missed/false mask."""
    return float(np.sqrt(np.sum((np.asarray(shape, float) * np.asarray(spacing, float)) ** 2)))


def _surface_distances(
    pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances pred-border -> ref-border and ref-border -> pred-border (both masks non-empty)."""
    with warnings.catch_warnings():
        # MONAI warns about its own internal use of a deprecated argument; nothing for the user to act on.
        warnings.simplefilter("ignore", FutureWarning)
        _, dists, _ = get_edge_surface_distance(
            pred, ref, distance_metric="euclidean", spacing=None if spacing is None else list(spacing), symmetric=True
        )
    d_pred, d_ref = (np.asarray(torch.as_tensor(d).cpu().numpy(), dtype=np.float64) for d in dists)
    return d_pred, d_ref


def hd95(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None, mode: Mode = "strict"
) -> float:
    """95th-percentile Hausdorff distance of two binary masks under the rules of ``mode``.

    ``spacing`` (same axis order as the arrays, mm) is used in strict mode only; nnformer mode measures
    in voxels like the scripts it reproduces.
    """
    check_mode(mode)
    p, r = _as_bool_tensor(pred), _as_bool_tensor(ref)
    if p.shape != r.shape:
        raise ValueError(f"hd95: mask shapes differ ({tuple(p.shape)} vs {tuple(r.shape)})")
    if spacing is not None and len(spacing) != p.ndim:
        raise ValueError(f"hd95: spacing {tuple(spacing)} has {len(spacing)} values for a {p.ndim}D mask")
    p_any, r_any = bool(p.any()), bool(r.any())
    if mode == "nnformer":
        if not (p_any and r_any):
            return 0.0
        d_pred, d_ref = _surface_distances(p, r, None)
        # medpy pools both directions before taking the percentile (numpy's linear interpolation).
        return float(np.percentile(np.concatenate([d_pred, d_ref]), 95))
    if not p_any and not r_any:
        return math.nan
    if not (p_any and r_any):
        return image_diagonal_mm(p.shape, spacing if spacing is not None else [1.0] * p.ndim)
    d_pred, d_ref = _surface_distances(p, r, spacing)
    return float(max(np.percentile(d_pred, 95), np.percentile(d_ref, 95)))


def mask_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None, mode: Mode = "strict"
) -> dict[str, float | int]:
    """Dice, HD95 and voxel counts of one binary mask pair (the row of the per-case table)."""
    return {
        "dice": dice_score(pred, ref, mode),
        "hd95": hd95(pred, ref, spacing, mode),
        "pred_voxels": int(np.count_nonzero(pred)),
        "ref_voxels": int(np.count_nonzero(ref)),
    }
