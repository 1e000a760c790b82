"""Checks every input's grid before use, and every volume's memory before it is allocated.

Refused (a DataError naming the image): a non-finite affine, a spacing that is NaN, infinite, zero or outside
[:data:`SPACING_MIN_MM`, :data:`SPACING_MAX_MM`] (no scanner or format conversion produces those: they are
broken headers, e.g. a pixdim in metres or a zero), a sheared grid (axes not orthogonal beyond
:data:`SHEAR_TOLERANCE`; NIfTI's qform cannot hold a shear, so outputs would disagree between qform and sform
and tools would show them rotated; resample such an image onto an orthogonal grid first), complex voxels.
A volume that would not fit in the memory available (resampling onto a much finer grid, ``synth --shape``
too large) is refused with the size it would need, before it is allocated.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from lightmedseg.data.errors import DataError

SPACING_MIN_MM = 1e-3  # 1 micrometre: below any MR/CT voxel; smaller values are unit errors
SPACING_MAX_MM = 100.0  # 10 cm: above any slice gap; larger values are unit errors
SHEAR_TOLERANCE = 1e-3  # |cos| of the angle between two voxel axes (about 0.06 degrees)


def check_voxel_type(dtype: np.dtype, name: str) -> None:
    """Refuse complex voxels (the imaginary part would be dropped)."""
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise DataError(f"{name}: voxels are complex ({np.dtype(dtype)}); expected real-valued intensities "
                        "(e.g. the magnitude image)")


def check_grid(affine: np.ndarray, spacing_zyx: Sequence[float], name: str) -> None:
    """Refuse a non-finite affine, a broken spacing or a shear (see the module docstring)."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise DataError(f"{name}: the voxel-to-world affine has NaN or Inf entries; expected a finite affine "
                        "(fix the header before using this image)")
    spacing = [float(s) for s in spacing_zyx]
    if not all(math.isfinite(s) and SPACING_MIN_MM <= s <= SPACING_MAX_MM for s in spacing):
        raise DataError(f"{name}: voxel spacing {spacing} mm (z, y, x) is not a valid size; expected finite values "
                        f"in [{SPACING_MIN_MM:g}, {SPACING_MAX_MM:g}] mm (fix the header, e.g. its pixdim)")
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms == 0):
        raise DataError(f"{name}: the voxel-to-world affine has a zero axis; expected three independent axes")
    unit = columns / norms
    cosines = np.abs(unit.T @ unit - np.eye(3))
    if cosines.max() > SHEAR_TOLERANCE:
        angle = math.degrees(math.asin(min(1.0, float(cosines.max()))))
        raise DataError(f"{name}: the grid is sheared (two voxel axes are {90 - angle:.2f} degrees apart, not 90); "
                        "lightmedseg needs an orthogonal grid: resample the image onto one first")


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_allocation(voxels: float, bytes_per_voxel: float, what: str) -> None:
    """Refuse a volume of ``voxels`` needing ``bytes_per_voxel`` each when it exceeds the memory available."""
    need = float(voxels) * bytes_per_voxel
    have = available_memory()
    if not math.isfinite(need) or (have is not None and need > have):
        shown = "more than can be counted" if not math.isfinite(need) else _gib(need)
        raise DataError(f"{what} would need {shown} of memory ({voxels:.4g} voxels) but "
                        f"{'an unknown amount' if have is None else _gib(have)} is available")


def resampled_voxels(shape_zyx: Sequence[int], spacing_zyx: Sequence[float], target_spacing: Sequence[float]) -> float:
    """Voxels of the same field of view on a grid of ``target_spacing`` (any axis order: the product counts)."""
    extent = np.prod([float(n) * float(s) for n, s in zip(shape_zyx, spacing_zyx)])
    return float(extent / np.prod([float(t) for t in target_spacing]))
