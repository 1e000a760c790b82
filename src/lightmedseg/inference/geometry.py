"""Geometry safety: the spacing and orientation a model was trained at, a warning when an input differs,
and optional resampling to the training grid and back (MONAI ``Orientation`` + ``Spacing``, then
``SpatialResample`` onto the input's own grid).

A model's training geometry lives in its config (its ``geometry`` key, written by training from the
dataset's image headers) or, for shipped models trained before that existed, in the model card
(``card.json`` beside the weights, see :mod:`lightmedseg.inference.cards`)::

    geometry:
      spacing: [10.0, 1.5625, 1.5625]   # (z, y, x) mm, median over the training images
      orientation: RAS                  # nibabel axis codes of the voxel axes (x, y, z)
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lightmedseg.config import Config, typed_config
from lightmedseg.data.geometry_checks import check_allocation, resampled_voxels
from lightmedseg.data.io import ImageGeometry

# An input whose spacing differs from the training spacing by more than this factor along any axis
# (larger or smaller) gets a warning when resampling is turned off (``--no-resample``).
SPACING_WARN_FACTOR = 1.5

# Prediction resamples to the training grid (and maps back) when the input's spacing differs from the
# training spacing by more than this fraction along any axis: |s_in - s_train| > RESAMPLE_TOLERANCE * s_train.
# Why 10 %: a smaller change is covered by the scale augmentation every preset trains with (zoom 0.7-1.4x),
# so interpolating twice (image there, probabilities back) would only blur boundaries and cost time; ACDC's
# own in-plane spacings (1.37-1.68 mm) mostly fall within 10 % of the shipped model's 1.5625 mm, while a
# reconstruction at 0.78 mm (2x) or a 5 mm slice stack is resampled. nnU-Net resamples every case (0 %).
RESAMPLE_TOLERANCE = 0.10


# Rough float32 copies per channel (+2 for the class probabilities) that resampling holds at once.
RESAMPLE_BYTES_PER_VOXEL = 4 * 3


def training_geometry(config: Mapping | Config) -> dict | None:
    """``{"spacing": (z, y, x), "orientation": "RAS"}`` from the config's ``geometry``, or None if unknown."""
    geo = typed_config(config).geometry
    if geo is None or "spacing" not in geo:
        return None
    spacing = tuple(float(s) for s in geo["spacing"])
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"model config: geometry.spacing {list(geo['spacing'])} must be three positive sizes (z, y, x) in mm")
    orientation = str(geo.get("orientation", "RAS")).upper()
    if len(orientation) != 3 or any(sum(c in pair for c in orientation) != 1 for pair in ("LR", "AP", "SI")):
        raise ValueError(f"model config: geometry.orientation {orientation!r} must be three axis codes such as RAS or LPS")
    return {"spacing": spacing, "orientation": orientation}


def axis_codes(affine: np.ndarray) -> str:
    """Nibabel axis codes of the voxel axes (x, y, z) of ``affine``, e.g. ``"RAS"`` or ``"LPS"``."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine)))


def _fmt(spacing: Sequence[float]) -> str:
    return " x ".join(f"{s:.4g}" for s in spacing)


def geometry_notes(geometry: ImageGeometry, config: Mapping) -> list[str]:
    """Warnings (one line each) when ``geometry`` is not the model's training spacing or orientation."""
    train = training_geometry(config)
    if train is None:
        return []
    notes = []
    ratios = [max(a / b, b / a) for a, b in zip(geometry.spacing, train["spacing"])]
    if max(ratios) > SPACING_WARN_FACTOR:
        axes = ", ".join(ax for ax, r in zip("zyx", ratios) if r > SPACING_WARN_FACTOR)
        notes.append(
            f"spacing {_fmt(geometry.spacing)} mm (z, y, x) differs from the model's training spacing "
            f"{_fmt(train['spacing'])} mm by more than {SPACING_WARN_FACTOR}x along {axes}; "
            "results may be poor (without --no-resample, prediction runs on the training grid)"
        )
    codes = axis_codes(geometry.affine)
    if codes != train["orientation"]:
        notes.append(
            f"voxel axes are {codes}, the model was trained on {train['orientation']} "
            "(--resample reorients before predicting)"
        )
    return notes


@dataclass(frozen=True)
class ResampleDecision:
    """Whether one case is predicted on the training grid, and the one log line that says why."""

    resample: bool
    line: str


def spacing_out_of_tolerance(spacing: Sequence[float], train_spacing: Sequence[float],
                             tolerance: float = RESAMPLE_TOLERANCE) -> list[str]:
    """The axes (``z``, ``y``, ``x``) along which ``spacing`` differs from ``train_spacing`` by more than ``tolerance``."""
    return [ax for ax, s, t in zip("zyx", spacing, train_spacing) if abs(float(s) - float(t)) > tolerance * float(t)]


def resample_decision(geometry: ImageGeometry, config: Mapping, resample: bool | None = None) -> ResampleDecision:
    """Decide for one case: ``resample`` True (forced) or False (off) wins; ``None`` (the default) resamples
    when the spacing is out of :data:`RESAMPLE_TOLERANCE` of the model's training spacing along any axis."""
    train = training_geometry(config)
    spacing = f"spacing {_fmt(geometry.spacing)} mm"
    if train is None:
        return ResampleDecision(False, f"{spacing}, training spacing unknown: not resampled")
    head = f"{spacing}, training {_fmt(train['spacing'])} mm (z, y, x)"
    if resample is False:
        return ResampleDecision(False, f"{head}: not resampled (--no-resample)")
    if resample is True:
        return ResampleDecision(True, f"{head}: resampled to the training grid (--resample)")
    axes = spacing_out_of_tolerance(geometry.spacing, train["spacing"])
    if axes:
        return ResampleDecision(True, f"{head}: resampled to the training grid and back (differs by more than "
                                      f"{RESAMPLE_TOLERANCE:.0%} along {', '.join(axes)})")
    return ResampleDecision(False, f"{head}: not resampled (within {RESAMPLE_TOLERANCE:.0%})")


def _meta(array_czyx: np.ndarray, affine: np.ndarray):
    import torch
    from monai.data import MetaTensor

    data = torch.from_numpy(np.ascontiguousarray(np.asarray(array_czyx, dtype=np.float32).transpose(0, 3, 2, 1)))
    return MetaTensor(data, affine=torch.as_tensor(np.asarray(affine), dtype=torch.float64))


def to_training_grid(image: np.ndarray, geometry: ImageGeometry, config: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``(C, Z, Y, X)`` ``image`` to the model's training orientation and spacing (trilinear).

    Returns the resampled ``(C, Z', Y', X')`` array and its affine (for :func:`from_training_grid`).
    """
    from monai.transforms import Orientation, Spacing

    train = training_geometry(config)
    if train is None:
        raise ValueError("--resample needs the model's training spacing (config 'geometry' or card.json), which this model lacks")
    check_allocation(resampled_voxels(geometry.shape, geometry.spacing, train["spacing"]),
                     RESAMPLE_BYTES_PER_VOXEL * (image.shape[0] + 2), "resampling to the training spacing "
                     f"{_fmt(train['spacing'])} mm of an image of {geometry.shape} voxels at {_fmt(geometry.spacing)} mm")
    x = _meta(image, geometry.affine)
    x = Orientation(axcodes=train["orientation"], labels=(("L", "R"), ("P", "A"), ("I", "S")))(x)
    sz, sy, sx = train["spacing"]
    x = Spacing(pixdim=(sx, sy, sz), mode="bilinear", padding_mode="border")(x)
    out = np.ascontiguousarray(x.numpy().transpose(0, 3, 2, 1), dtype=np.float32)
    return out, np.asarray(x.affine, dtype=np.float64)


def from_training_grid(values: np.ndarray, affine: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Resample ``(N, Z', Y', X')`` values on the training grid (``affine``) back onto ``geometry``'s grid."""
    import torch
    from monai.transforms import SpatialResample

    x = _meta(values, affine)
    nz, ny, nx = geometry.shape
    out = SpatialResample(mode="bilinear", padding_mode="border")(
        x, dst_affine=torch.as_tensor(np.asarray(geometry.affine), dtype=torch.float64), spatial_size=(nx, ny, nz)
    )
    return np.ascontiguousarray(np.asarray(out.numpy()).transpose(0, 3, 2, 1), dtype=np.float32)


def dataset_geometry(image_files: Sequence[str | os.PathLike]) -> dict | None:
    """The training geometry of a dataset: median spacing (z, y, x) and most common orientation of its images."""
    import nibabel as nib

    spacings, codes = [], Counter()
    for f in image_files:
        try:
            img = nib.load(str(f))
        except Exception:  # an unreadable file is reported by the loader, not here
            continue
        zooms = img.header.get_zooms()[:3]
        spacings.append((float(zooms[2]), float(zooms[1]), float(zooms[0])))
        codes[axis_codes(img.affine)] += 1
    if not spacings:
        return None
    median = np.median(np.asarray(spacings), axis=0)
    return {"spacing": [round(float(s), 6) for s in median], "orientation": codes.most_common(1)[0][0]}


def dataset_geometry_of(data_dir: str | os.PathLike) -> dict | None:
    """:func:`dataset_geometry` over the first channel of every training image in ``data_dir/imagesTr``."""
    files = sorted(Path(data_dir, "imagesTr").glob("*_0000.nii*"))
    return dataset_geometry(files)


__all__ = [
    "SPACING_WARN_FACTOR", "RESAMPLE_TOLERANCE", "ResampleDecision", "resample_decision", "spacing_out_of_tolerance",
    "training_geometry", "geometry_notes", "axis_codes", "to_training_grid",
    "from_training_grid", "dataset_geometry", "dataset_geometry_of",
]
