"""Checks of a DICOM series before it is used: a series that does not describe one regular 3D grid is refused.

SimpleITK (GDCM) assembles whatever slices it finds: it spaces them evenly whatever their positions say
(missing slices vanish, a duplicated one adds a slice), silently leaves out a slice it cannot read, and takes
the identity for an orientation it cannot use. Every slice's header and pixels are therefore read once here,
and all problems of a series are reported together (:func:`check_dicom_series`), naming the folder and files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lightmedseg.data.errors import DataError

POSITION, ORIENTATION = "0020|0032", "0020|0037"  # ImagePositionPatient, ImageOrientationPatient
# A step between slice positions may differ from the median step by this fraction (scanner rounding) ...
SPACING_TOLERANCE = 0.01
# ... and two slices closer than this (mm) lie at the same position.
SAME_POSITION_MM = 1e-3
# Orientation vectors: unit length and orthogonal within this; slices agree within this.
ORIENTATION_TOLERANCE = 1e-3


def _floats(value: str, count: int) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in value.split("\\")], dtype=np.float64)
    except ValueError:
        return None
    return out if out.size == count and np.all(np.isfinite(out)) else None


def slice_problems(files: Sequence[str | os.PathLike]) -> tuple[list[str], list[tuple[str, np.ndarray, np.ndarray]]]:
    """(problems, [(file name, position, orientation)]) of every readable slice."""
    import SimpleITK as sitk

    problems: list[str] = []
    slices = []
    for f in files:
        name = Path(f).name
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        try:
            reader.Execute()  # the pixels too: a truncated slice fails here
        except RuntimeError as exc:
            reason = (str(exc).strip().splitlines() or ["unreadable"])[-1][:120]
            problems.append(f"{name}: unreadable or truncated slice ({reason})")
            continue
        keys = set(reader.GetMetaDataKeys())
        pos = _floats(reader.GetMetaData(POSITION), 3) if POSITION in keys else None
        ori = _floats(reader.GetMetaData(ORIENTATION), 6) if ORIENTATION in keys else None
        if pos is None:
            problems.append(f"{name}: no valid slice position (ImagePositionPatient)")
        if ori is None:
            problems.append(f"{name}: no valid orientation (ImageOrientationPatient)")
        elif not _valid_orientation(ori):
            problems.append(f"{name}: invalid orientation {ori.round(4).tolist()} (rows and columns must be "
                            "orthogonal unit vectors)")
            ori = None
        if pos is not None and ori is not None:
            slices.append((name, pos, ori))
    return problems, slices


def _valid_orientation(ori: np.ndarray) -> bool:
    row, col = ori[:3], ori[3:]
    tol = ORIENTATION_TOLERANCE
    return abs(np.linalg.norm(row) - 1) < tol and abs(np.linalg.norm(col) - 1) < tol and abs(row @ col) < tol


def grid_problems(slices: list[tuple[str, np.ndarray, np.ndarray]]) -> list[str]:
    """Inconsistent orientation, duplicated positions and uneven (missing-slice) spacing along the normal."""
    if len(slices) < 2:
        return []
    problems = []
    ref_name, _, ref_ori = slices[0]
    odd = [name for name, _, ori in slices[1:] if np.abs(ori - ref_ori).max() > ORIENTATION_TOLERANCE]
    if odd:
        problems.append(f"orientation differs between slices ({ref_name} vs {odd[:3]}{' ...' if len(odd) > 3 else ''})")
        return problems
    normal = np.cross(ref_ori[:3], ref_ori[3:])
    order = sorted(slices, key=lambda s: float(s[1] @ normal))
    depth = np.array([float(s[1] @ normal) for s in order])
    steps = np.diff(depth)
    same = [(order[i][0], order[i + 1][0]) for i in np.flatnonzero(steps < SAME_POSITION_MM)]
    if same:
        problems.append(f"{len(same)} duplicated slice position(s), e.g. {same[0][0]} and {same[0][1]} at "
                        f"{depth[np.flatnonzero(steps < SAME_POSITION_MM)[0]]:.3f} mm")
    real = steps[steps >= SAME_POSITION_MM]
    if real.size:
        step = float(np.median(real))
        uneven = [i for i in np.flatnonzero(steps >= SAME_POSITION_MM)
                  if abs(steps[i] - step) > SPACING_TOLERANCE * step + SAME_POSITION_MM]
        if uneven:
            i = uneven[0]
            missing = int(round(sum(steps[j] / step - 1 for j in uneven if steps[j] > step)))
            problems.append(
                f"uneven slice spacing: steps of {step:.4g} mm, but {steps[i]:.4g} mm between {order[i][0]} and "
                f"{order[i + 1][0]}" + (f" ({len(uneven)} uneven step(s), about {missing} missing slice(s))"
                                        if missing else f" ({len(uneven)} uneven step(s))"))
    return problems


def check_dicom_series(folder: str | os.PathLike, series_files: Sequence[str | os.PathLike],
                       folder_files: Sequence[str | os.PathLike] = ()) -> None:
    """Raise DataError naming ``folder`` and listing every problem of its series; ``folder_files``: every DICOM
    file of the folder, so that a slice GDCM left out of the series (unreadable) is reported, not dropped."""
    left_out = sorted(set(map(str, folder_files)) - set(map(str, series_files)))
    problems, slices = slice_problems([*series_files, *left_out])
    problems += grid_problems(slices)
    if problems:
        listed = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise DataError(f"{folder}: the DICOM series is not one regular 3D volume: {listed}")
