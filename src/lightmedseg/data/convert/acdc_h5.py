"""ACDC HDF5 volumes (WSL4MIS layout) -> canonical layout.

Source: ``patientNNN_frameFF.h5`` files (any depth) with datasets ``image`` float (z, y, x) and
``label`` integer (z, y, x) (0 background, 1 RV, 2 Myo, 3 LV). HDF5 stores no spacing: every volume
is written with ``--spacing Z Y X`` (default :data:`DEFAULT_SPACING`, patient001's 10 x 1.5625 x
1.5625 mm, typical of ACDC's thick slices), and dataset.json says so in ``spacing_note``.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from lightmedseg.data import labels as L
from lightmedseg.data.convert import progress
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import ImageGeometry, to_integer_labels
from lightmedseg.data.layout import DatasetWriter

ACCEPTS_SPACING = True
DEFAULT_SPACING = (10.0, 1.5625, 1.5625)
_NAME = re.compile(r"^(patient\d{3}_frame\d{2})\.h5$")
_ACDC_MAP = {v: v for v in L.ACDC_LABELS.values()}


def read_h5_case(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(image (Z, Y, X) float32, label (Z, Y, X) int16 or None) of one WSL4MIS file."""
    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise DataError(f"{path}: no 'image' dataset (found keys {sorted(f.keys())})")
            image = np.asarray(f["image"][()], dtype=np.float32)
            label = np.asarray(f["label"][()]) if "label" in f else None
    except DataError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError on truncated or corrupt files
        raise DataError(f"{path}: cannot read HDF5 ({type(exc).__name__}: {exc}); the file is truncated or corrupt") from None
    if image.ndim != 3:
        raise DataError(f"{path}: 'image' must be a 3D (z, y, x) volume, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise DataError(f"{path}: 'image' has NaN or Inf voxels")
    if label is not None:
        if label.shape != image.shape:
            raise DataError(f"{path}: 'label' shape {label.shape} differs from 'image' shape {image.shape}")
        label = to_integer_labels(label, path)
    return image, label


def convert_into(src: Path, out: Path, spacing=None) -> dict:
    spacing = tuple(float(s) for s in (spacing or DEFAULT_SPACING))
    files = sorted((p for p in src.rglob("*.h5") if _NAME.match(p.name)), key=lambda p: p.name)
    if not files:
        raise DataError(f"{src}: no patientNNN_frameFF.h5 files found (expected the WSL4MIS ACDC layout)")
    writer = DatasetWriter(out, list(L.ACDC_MODALITIES), L.ACDC_LABELS, "acdc")
    for f in progress(files, "acdc-h5"):
        image, label = read_h5_case(f)
        if label is not None:
            label = L.remap_values(label, _ACDC_MAP, f"{f} (ACDC labels)")
        geom = ImageGeometry.from_spacing(image.shape, spacing)
        writer.write_case(_NAME.match(f.name).group(1), image[None], label, geom,
                          "Tr" if label is not None else "Ts", str(f))
    return writer.finish(
        "ACDC (HDF5)", "acdc-h5", spacing=list(spacing),
        spacing_note=(f"HDF5 source stores no voxel spacing; every volume was written with spacing "
                      f"(z, y, x) = {list(spacing)} mm from --spacing (default {list(DEFAULT_SPACING)}). "
                      "Orientation is unknown (identity axes)."),
        description=f"converted from {src.name}; intensities as stored (WSL4MIS: clipped and scaled to [0, 1])",
    )
