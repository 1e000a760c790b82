"""NIfTI reading and writing with the package's (C, Z, Y, X) array convention.

nibabel returns arrays indexed (x, y, z); everything inside the package uses (z, y, x), so reading
transposes with ``.transpose(2, 1, 0)`` and writing transposes back. :class:`ImageGeometry` keeps the
affine and header of the source file so that labels and predictions are written back in the native
geometry of the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from lightmedseg.data.errors import DataError
from lightmedseg.io_utils import atomic_path, default_file_mode  # noqa: F401  (re-exported)

# Affines of two files are "the same" when they differ by less than this (mm), like nnU-Net's check.
AFFINE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ItkGeometry:
    """A grid as ITK stores it (LPS, index order x, y, z): kept exactly for images read through SimpleITK."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major


@dataclass
class ImageGeometry:
    """Where a (Z, Y, X) array sits in the world: shape, spacing (sz, sy, sx) in mm, affine, header.

    ``header`` is the source NIfTI header (NIfTI input), ``itk`` the exact ITK grid (NRRD/MHA/DICOM input);
    see :mod:`lightmedseg.data.readers` for how the two descriptions relate.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    itk: ItkGeometry | None = None

    @classmethod
    def from_spacing(cls, shape: Sequence[int], spacing: Sequence[float]) -> "ImageGeometry":
        """A geometry with a diagonal affine (used when the source has no orientation, e.g. HDF5)."""
        sz, sy, sx = (float(s) for s in spacing)
        return cls(tuple(int(s) for s in shape), (sz, sy, sx), np.diag([sx, sy, sz, 1.0]), None)

    def matches(self, other: "ImageGeometry", tol: float = AFFINE_TOLERANCE) -> bool:
        """True when both geometries have the same shape and (within ``tol``) the same affine."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=tol))


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def load_header(path: str | os.PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file without reading its voxels, and refuse what no reader should accept silently.

    Refused: a missing or non-NIfTI file, an unreadable header, a voxel-to-world affine with NaN/Inf
    entries (it would be copied into every output), complex voxel types (the imaginary part would be
    dropped). Each error names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not _is_nifti(path):
        raise DataError(f"{path}: expected a NIfTI file ending in .nii or .nii.gz")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for unreadable headers
        raise DataError(f"{path}: cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise DataError(
            f"{path}: the voxel-to-world affine (sform/qform) has NaN or Inf entries; expected a finite "
            "affine (fix the header, e.g. with nibabel, before using this file)"
        )
    dtype = img.header.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{path}: voxels are complex ({dtype}); expected real-valued intensities (e.g. the magnitude image)")
    return img


def geometry_difference(a: "ImageGeometry", b: "ImageGeometry") -> str:
    """How two geometries differ, for messages: the shapes when they differ, else the largest affine difference."""
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape} (z, y, x)"
    return f"same shape {a.shape} but affines differ by up to {np.abs(a.affine - b.affine).max():.4g} mm"


def _load(path: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load the voxel array of a NIfTI file (nibabel order), turning every failure into a DataError."""
    path = Path(path)
    img = load_header(path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel/zlib/EOF errors on truncated or corrupt files
        raise DataError(
            f"{path}: cannot read NIfTI ({type(exc).__name__}: {' '.join(str(exc).split())}); the file is truncated "
            "or corrupt"
        ) from None
    return data, img


def _geometry(img: nib.Nifti1Image, shape_xyz: Sequence[int], name: str = "nibabel image") -> ImageGeometry:
    """The grid of a NIfTI image, checked (:func:`lightmedseg.data.geometry_checks.check_grid`)."""
    from lightmedseg.data.geometry_checks import check_grid

    zooms = img.header.get_zooms()[:3]
    check_grid(img.affine, (zooms[2], zooms[1], zooms[0]), name)
    return ImageGeometry(
        shape=(int(shape_xyz[2]), int(shape_xyz[1]), int(shape_xyz[0])),
        spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])),
        affine=np.asarray(img.affine, dtype=np.float64),
        header=img.header.copy(),
    )


def _squeeze_to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    # Trailing singleton dimensions (x, y, z, 1) are common and harmless; anything else is not 3D.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got {data.ndim}D data of shape {tuple(data.shape)}")
    return data


def _check_finite(data: np.ndarray, path: Path) -> None:
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise DataError(f"{path}: {bad} voxels are NaN or Inf; expected finite intensities")


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read one 3D intensity volume as float32 (Z, Y, X) with its geometry."""
    path = Path(path)
    data, img = _load(path)
    data = _squeeze_to_3d(data, path)
    _check_finite(data, path)
    return np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32), _geometry(img, data.shape, str(path))


def read_4d(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read a 4D (x, y, z, c) NIfTI (MSD style) as float32 (C, Z, Y, X)."""
    path = Path(path)
    data, img = _load(path)
    if data.ndim != 4:
        raise DataError(f"{path}: expected 4D multi-modal data (x, y, z, channel), got shape {data.shape}")
    _check_finite(data, path)
    arr = np.ascontiguousarray(data.transpose(3, 2, 1, 0), dtype=np.float32)
    return arr, _geometry(img, data.shape[:3], str(path))


def read_image_channels(files: Sequence[str | os.PathLike]) -> tuple[np.ndarray, ImageGeometry]:
    """Read one 3D file per channel into float32 (C, Z, Y, X); all channels must share shape and affine."""
    if not files:
        raise DataError("read_image_channels: no image files given")
    arrays, ref = [], None
    for f in files:
        arr, geom = read_volume(f)
        if ref is None:
            ref = geom
        elif not geom.matches(ref):
            raise DataError(
                f"{f}: geometry differs from {files[0]} ({geometry_difference(geom, ref)}); "
                "all modalities of a case must share shape and affine"
            )
        arrays.append(arr)
    return np.stack(arrays, axis=0), ref


def to_integer_labels(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Check that a label array holds integers (possibly stored as floats) and return it as int16."""
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)):
            raise DataError(f"{path}: label contains NaN or Inf; expected integer class values")
        rounded = np.rint(data)
        off = np.abs(rounded - data) > 1e-3  # tolerate float noise of scl_slope scaling (e.g. 0.99999997)
        if off.any():
            bad = np.unique(data[off])[:5]
            raise DataError(f"{path}: label has non-integer values (e.g. {bad.tolist()}); expected integer class values")
        data = rounded
    elif not np.issubdtype(data.dtype, np.integer) and data.dtype != np.bool_:
        raise DataError(f"{path}: label has dtype {data.dtype}; expected integer class values")
    if data.size and (data.min() < 0 or data.max() > 32767):
        raise DataError(f"{path}: label values range {data.min()}..{data.max()}; expected 0..32767")
    return data.astype(np.int16)


def read_label(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read a 3D label map as int16 (Z, Y, X); rejects non-integer values, NaN/Inf and non-3D data."""
    path = Path(path)
    data, img = _load(path)
    data = _squeeze_to_3d(data, path)
    labels = to_integer_labels(data, path)
    return np.ascontiguousarray(labels.transpose(2, 1, 0)), _geometry(img, data.shape, str(path))


def _nifti(array_zyx: np.ndarray, geometry: ImageGeometry, dtype: np.dtype) -> nib.Nifti1Image:
    if tuple(array_zyx.shape[-3:]) != tuple(geometry.shape):
        raise DataError(f"array shape {array_zyx.shape} does not match the reference geometry {geometry.shape}")
    header = geometry.header.copy() if geometry.header is not None else None
    data = np.ascontiguousarray(np.asarray(array_zyx).transpose(2, 1, 0)).astype(dtype, copy=False)
    img = nib.Nifti1Image(data, geometry.affine, header=header)
    img.header.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    if geometry.header is None:
        sz, sy, sx = geometry.spacing
        img.header.set_zooms((sx, sy, sz))
        img.header.set_xyzt_units("mm")
        img.set_qform(geometry.affine, code=1)
        img.set_sform(geometry.affine, code=1)
    return img


def write_volume(path: str | os.PathLike, array: np.ndarray, geometry: ImageGeometry, dtype=np.float32) -> None:
    """Write a (Z, Y, X) array atomically as NIfTI in ``geometry``."""
    with atomic_path(path, suffix=".nii.gz" if str(path).endswith(".gz") else ".nii") as tmp:
        nib.save(_nifti(array, geometry, np.dtype(dtype)), str(tmp))


def write_label(path: str | os.PathLike, array: np.ndarray, geometry: ImageGeometry) -> None:
    """Write a (Z, Y, X) integer label map atomically (uint8 when it fits, else int16) in ``geometry``."""
    array = np.asarray(array)
    dtype = np.uint8 if array.size == 0 or (array.min() >= 0 and array.max() <= 255) else np.int16
    write_volume(path, array, geometry, dtype=dtype)
