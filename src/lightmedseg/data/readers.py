"""Every image format predict reads and writes, through one geometry model (:class:`ImageGeometry`).

* NIfTI (``.nii``, ``.nii.gz``) goes through nibabel (:mod:`lightmedseg.data.io`), keeping the source
  header, so NIfTI in -> NIfTI out is byte-for-byte the same geometry as before.
* NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and DICOM series (a folder of slices) go
  through SimpleITK, imported only when such a file is met.

Geometry model. Arrays are ``(Z, Y, X)`` (channels first: ``(C, Z, Y, X)``) everywhere in the package.
:class:`ImageGeometry` holds the shape, the spacing ``(sz, sy, sx)`` and the nibabel affine (voxel
``(x, y, z)`` index -> RAS+ mm). ITK describes the same grid in LPS+ with ``origin``, ``spacing`` and a
``direction`` matrix, related by::

    affine[:3, :3] = diag(-1, -1, 1) @ direction @ diag(sx, sy, sz)
    affine[:3, 3]  = diag(-1, -1, 1) @ origin

An image read through SimpleITK also keeps its exact ITK origin/spacing/direction (``geometry.itk``), so
writing it back in its own format reproduces them bit for bit; other conversions go through the affine.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lightmedseg.data.dicom_checks import check_dicom_series
from lightmedseg.data.errors import DataError
from lightmedseg.data.geometry_checks import check_grid, check_voxel_type
from lightmedseg.data.io import ImageGeometry, ItkGeometry, default_file_mode, read_4d, read_volume, write_volume
from lightmedseg.io_utils import atomic_path, write_failure

if TYPE_CHECKING:  # SimpleITK is imported lazily: NIfTI-only users never load it
    import SimpleITK as sitk

NIFTI_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii")
ITK_ENDINGS: tuple[str, ...] = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_ENDINGS: tuple[str, ...] = NIFTI_ENDINGS + ITK_ENDINGS
DICOM_ENDINGS: tuple[str, ...] = (".dcm", ".dicom", ".ima")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def image_ending(name: str) -> str | None:
    """The image ending of a file name (``.nii.gz``, ``.nrrd``, ...), or None for anything else."""
    lower = name.lower()
    if name.startswith("."):
        return None
    return next((e for e in IMAGE_ENDINGS if lower.endswith(e)), None)


def strip_ending(name: str) -> str | None:
    """``case.nii.gz`` -> ``case``; None when the name has no image ending."""
    ending = image_ending(name)
    return name[: -len(ending)] if ending else None


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM part-10 file (``DICM`` at byte 128) or a file with a DICOM ending."""
    if path.suffix.lower() in DICOM_ENDINGS:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(path: Path) -> bool:
    """True when ``path`` is a folder whose files include DICOM files (and no other image files)."""
    if not path.is_dir():
        return False
    files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")]
    if any(image_ending(f.name) for f in files):
        return False
    return any(is_dicom_file(f) for f in files[:50])


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in ``folder`` (hidden files left out)."""
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and is_dicom_file(f))


def _sitk():
    try:
        import SimpleITK
    except ImportError:
        raise DataError("reading NRRD/MetaImage/DICOM needs SimpleITK: pip install SimpleITK") from None
    return SimpleITK


# -- geometry conversions ----------------------------------------------------------------------------------
def itk_geometry(geometry: ImageGeometry) -> ItkGeometry:
    """ITK origin/spacing/direction (LPS, x-y-z index order) of ``geometry``; exact if it was read by ITK."""
    if geometry.itk is not None:
        return geometry.itk
    sz, sy, sx = geometry.spacing
    spacing = np.array([sx, sy, sz], dtype=np.float64)
    a = np.asarray(geometry.affine, dtype=np.float64)
    direction = LPS_TO_RAS @ a[:3, :3] / spacing[None, :]
    origin = LPS_TO_RAS @ a[:3, 3]
    return ItkGeometry(tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist()))


def affine_from_itk(itk: ItkGeometry) -> np.ndarray:
    """The nibabel (RAS) affine of an ITK grid."""
    affine = np.eye(4)
    direction = np.asarray(itk.direction, dtype=np.float64).reshape(3, 3)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(itk.spacing)
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(itk.origin, dtype=np.float64)
    return affine


def _geometry_of(img: "sitk.Image", name: str = "image") -> ImageGeometry:
    if img.GetDimension() != 3:
        raise DataError(f"expected a 3D image, got {img.GetDimension()}D of size {img.GetSize()}")
    itk = ItkGeometry(tuple(img.GetOrigin()), tuple(img.GetSpacing()), tuple(img.GetDirection()))
    sx, sy, sz = itk.spacing
    nx, ny, nz = img.GetSize()
    affine = affine_from_itk(itk)
    check_grid(affine, (sz, sy, sx), name)
    return ImageGeometry((nz, ny, nx), (sz, sy, sx), affine, None, itk)


def _to_channels(img: "sitk.Image", name: str) -> tuple[np.ndarray, ImageGeometry]:
    sitk = _sitk()
    if img.GetDimension() == 4:  # (x, y, z, c) stored as a 4D scalar image -> split the last axis
        size = list(img.GetSize())
        chans = [sitk.Extract(img, size[:3] + [0], [0, 0, 0, c]) for c in range(size[3])]
        arrays = [sitk.GetArrayFromImage(c) for c in chans]
        geometry = _geometry_of(chans[0], name)
        data = np.stack(arrays, axis=0)
    else:
        geometry = _geometry_of(img, name)
        data = sitk.GetArrayFromImage(img)  # (z, y, x) or (z, y, x, c) for vector pixels
        data = np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]
    check_voxel_type(data.dtype, name)
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise DataError(f"{name}: {int(np.count_nonzero(~np.isfinite(data)))} voxels are NaN or Inf; expected finite intensities")
    return np.ascontiguousarray(data, dtype=np.float32), geometry


def _read_itk(path: Path) -> "sitk.Image":
    sitk = _sitk()
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({first}); the file is truncated, corrupt or not an image") from None


def read_dicom_series(folder: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read the single DICOM series in ``folder`` as float32 ``(C=1, Z, Y, X)`` with its geometry."""
    sitk = _sitk()
    folder = Path(folder)
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise DataError(f"{folder}: no DICOM series found")
    if len(ids) > 1:
        raise DataError(f"{folder}: holds {len(ids)} DICOM series ({list(ids)[:3]}...); give a folder with one series")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    if len(files) < 2:
        raise DataError(f"{folder}: the DICOM series has {len(files)} slice(s); a 3D volume needs at least 2")
    check_dicom_series(folder, files, dicom_files(folder))  # missing, duplicated, unreadable slices...
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise DataError(f"{folder}: cannot read the DICOM series ({str(exc).strip().splitlines()[-1][:200]})") from None
    return _to_channels(img, str(folder))


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Any supported image (a file, or a DICOM series folder) as float32 ``(C, Z, Y, X)`` with its geometry.

    A 3D file is one channel; a 4D NIfTI ``(x, y, z, c)``, a 4D ITK image or a vector-pixel ITK image
    holds all channels.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    ending = image_ending(path.name)
    if ending in NIFTI_ENDINGS:
        if image_channels(path) > 1:  # 4D (x, y, z, c); a trailing singleton axis is 3D
            return read_4d(path)
        arr, geom = read_volume(path)
        return arr[None], geom
    if ending in ITK_ENDINGS:
        return _to_channels(_read_itk(path), str(path))
    raise DataError(f"{path}: unsupported image format; expected one of {', '.join(IMAGE_ENDINGS)} or a DICOM folder")


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """Shape ``(x, y, z)`` or ``(x, y, z, c)`` of any supported image from its header alone (a DICOM folder:
    the first slice's size and the series' slice count); trailing singleton axes are dropped."""
    path = Path(path)
    if path.is_dir():
        sitk = _sitk()
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise DataError(f"{path}: no DICOM series found")
        shape = tuple(_itk_header(Path(files[0]))[:2]) + (len(files),)
    elif image_ending(path.name) in NIFTI_ENDINGS:
        import nibabel as nib

        try:
            shape = tuple(int(s) for s in nib.load(str(path)).shape)
        except Exception as exc:  # nibabel raises many types for unreadable headers
            raise DataError(f"{path}: cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
    else:
        shape = _itk_header(path)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _itk_header(path: Path) -> tuple[int, ...]:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise DataError(f"{path}: cannot read the image header; the file is truncated, corrupt or not an image") from None
    size = tuple(int(s) for s in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    return size + (components,) if components > 1 else size


def image_channels(path: str | os.PathLike) -> int:
    """Number of channels in one image (file or DICOM folder), from its header alone."""
    shape = image_shape(path)
    return int(shape[3]) if len(shape) == 4 else 1


def read_channels(files: Sequence[str | os.PathLike]) -> tuple[np.ndarray, ImageGeometry]:
    """Read one 3D file per channel (any supported formats) into ``(C, Z, Y, X)``; all must share a grid."""
    if not files:
        raise DataError("read_channels: no image files given")
    if len(files) == 1:
        return read_image(files[0])
    arrays, ref = [], None
    for f in files:
        arr, geom = read_image(f)
        if arr.shape[0] != 1:
            raise DataError(f"{f}: holds {arr.shape[0]} channels; a channel file must hold one")
        if ref is None:
            ref = geom
        elif not geom.matches(ref):
            raise DataError(
                f"{f}: geometry differs from {files[0]} (shape {geom.shape} vs {ref.shape}, affine max difference "
                f"{np.abs(geom.affine - ref.affine).max():.4g} mm); all channels of a case must share one grid"
            )
        arrays.append(arr[0])
    return np.stack(arrays, axis=0), ref


def label_case_id(name: str) -> str | None:
    """Case ID of a label file name in any format predict writes (``case.nii.gz``, ``case.seg.nrrd``,
    ``case.mha`` -> ``case``); None for hidden files (atomic-write temporaries) and non-images."""
    stem = strip_ending(name)
    if stem is None:
        return None
    return stem[: -len(".seg")] if stem.lower().endswith(".seg") and name.lower().endswith(".nrrd") else stem


def read_label_file(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """A 3D label map in any format predict reads or writes, as int16 ``(Z, Y, X)`` with its geometry
    (NIfTI through nibabel, keeping the header; NRRD/MetaImage through SimpleITK)."""
    from lightmedseg.data.io import read_label, to_integer_labels

    path = Path(path)
    ending = image_ending(path.name)
    if ending in NIFTI_ENDINGS:
        return read_label(path)
    if ending not in ITK_ENDINGS:
        raise DataError(f"{path}: not a label map; expected one of {', '.join(IMAGE_ENDINGS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    img = _read_itk(path)
    if img.GetNumberOfComponentsPerPixel() != 1 or img.GetDimension() != 3:
        raise DataError(f"{path}: a label map must be one 3D volume, got size {img.GetSize()} with "
                        f"{img.GetNumberOfComponentsPerPixel()} component(s) per voxel")
    geometry = _geometry_of(img)
    data = _sitk().GetArrayFromImage(img)  # (z, y, x), the file's own integer type
    return np.ascontiguousarray(to_integer_labels(data, path)), geometry


# -- writing ------------------------------------------------------------------------------------------------
def label_dtype(array: np.ndarray) -> np.dtype:
    """uint8 when the labels fit, else int16 (the one rule for every output format)."""
    return np.dtype(np.uint8 if array.size == 0 or (array.min() >= 0 and array.max() <= 255) else np.int16)


def write_itk(path: str | os.PathLike, array: np.ndarray, geometry: ImageGeometry, dtype: np.dtype,
              metadata: dict[str, str] | None = None) -> None:
    """Write a ``(Z, Y, X)`` array as NRRD/MetaImage in ``geometry`` (compressed, atomically), with extra
    header fields ``metadata`` (NRRD ``key:=value``)."""
    sitk = _sitk()
    if tuple(array.shape) != tuple(geometry.shape):
        raise DataError(f"array shape {array.shape} does not match the reference geometry {geometry.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array).astype(dtype, copy=False))
    itk = itk_geometry(geometry)
    img.SetOrigin(itk.origin)
    img.SetSpacing(itk.spacing)
    img.SetDirection(itk.direction)
    for key, value in (metadata or {}).items():
        img.SetMetaData(key, value)
    path = Path(path)
    ending = image_ending(path.name)
    if ending in (".mhd", ".nhdr"):  # a header beside a raw data file: both staged, the header moved in last
        _write_header_pair(sitk, img, path)
        return
    with atomic_path(path, suffix=ending or "") as tmp:
        _write_checked(sitk, img, tmp, path)
        os.chmod(tmp, default_file_mode())


def _write_checked(sitk, img, file: Path, path: Path) -> None:
    """``sitk.WriteImage`` to ``file``, then read it back: NRRD's writer (teem) ignores a write that fails on a
    full disk and leaves a truncated file without an error. Failures are an ``OSError`` naming ``path``."""
    try:
        sitk.WriteImage(img, str(file), useCompression=True)
    except RuntimeError as exc:  # SimpleITK loses the errno (a full disk, a quota)
        raise write_failure(path, exc) from None
    try:
        sitk.ReadImage(str(file))
    except RuntimeError:
        raise write_failure(path, RuntimeError("the file written does not read back complete")) from None


def _write_header_pair(sitk, img, path: Path) -> None:
    """Write ``.mhd``/``.nhdr`` + data file in a temporary folder beside ``path``, then move the data file and
    last the header into place: a failure leaves no header (so no output that looks complete)."""
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _write_checked(sitk, img, stage / path.name, path)
        files = sorted(stage.iterdir(), key=lambda f: f.name == path.name)  # the header last
        for f in files:
            dest = path.parent / f.name
            if dest.is_dir():
                raise OSError(errno.EISDIR, f"{path}: cannot write, its data file {dest} is a folder")
            os.chmod(f, default_file_mode())
            os.replace(f, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: ImageGeometry, dtype=np.float32) -> None:
    """Write a ``(Z, Y, X)`` array in the format its name says (NIfTI, NRRD or MetaImage), in ``geometry``."""
    ending = image_ending(Path(path).name)
    if ending in NIFTI_ENDINGS:
        write_volume(path, array, geometry, dtype=dtype)
    elif ending in ITK_ENDINGS:
        write_itk(path, np.asarray(array), geometry, np.dtype(dtype))
    else:
        raise DataError(f"{path}: cannot write this format; name the output {' / '.join(IMAGE_ENDINGS)}")


def write_labels(path: str | os.PathLike, array: np.ndarray, geometry: ImageGeometry) -> None:
    """Write a ``(Z, Y, X)`` label map (uint8 when it fits, else int16) in the format its name says."""
    array = np.asarray(array)
    write_image(path, array, geometry, dtype=label_dtype(array))


__all__ = [
    "IMAGE_ENDINGS", "NIFTI_ENDINGS", "ITK_ENDINGS", "image_ending", "strip_ending", "is_dicom_folder",
    "itk_geometry", "affine_from_itk", "read_image", "read_label_file", "label_case_id", "read_channels", "read_dicom_series", "image_channels", "image_shape",
    "write_image", "write_labels", "write_itk", "label_dtype",
]
