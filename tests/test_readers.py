"""Readers and writers for NIfTI, NRRD, MetaImage and DICOM series keep the geometry exactly."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from lightmedseg.data.errors import DataError  # noqa: E402
from lightmedseg.data.readers import (  # noqa: E402
    affine_from_itk, image_channels, is_dicom_folder, itk_geometry, read_channels, read_image, write_labels,
)

ORIGIN = (-12.5, 30.25, 7.125)
SPACING = (0.7, 1.3, 3.1)  # x, y, z


def _direction() -> tuple[float, ...]:
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    return tuple(rot.ravel().tolist())


def _volume(shape=(7, 11, 9)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(100, 20, size=shape).astype(np.float32)  # (z, y, x)


def _itk_image(array: np.ndarray, direction=None) -> "sitk.Image":
    img = sitk.GetImageFromArray(array)
    img.SetOrigin(ORIGIN)
    img.SetSpacing(SPACING)
    img.SetDirection(direction or _direction())
    return img


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".mhd", ".nhdr"])
def test_itk_round_trip_keeps_geometry_exactly(tmp_path: Path, ending: str) -> None:
    array = _volume()
    src = tmp_path / f"case{ending}"
    sitk.WriteImage(_itk_image(array), str(src))
    image, geometry = read_image(src)
    assert image.shape == (1, 7, 11, 9) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0], array)
    ref = sitk.ReadImage(str(src))  # NRRD stores direction x spacing: the file's values, not ours, are the truth
    np.testing.assert_allclose(ref.GetSpacing(), SPACING, rtol=1e-12)
    assert geometry.shape == (7, 11, 9) and geometry.spacing == tuple(reversed(ref.GetSpacing()))
    labels = (array > 100).astype(np.int16) * 3
    out = tmp_path / "out" / f"pred{ending}"
    write_labels(out, labels, geometry)
    back = sitk.ReadImage(str(out))
    assert back.GetSize() == (9, 11, 7)
    assert back.GetOrigin() == ref.GetOrigin()
    if ending in (".mha", ".mhd"):  # MetaImage stores spacing and direction: bit-for-bit equal
        assert back.GetSpacing() == ref.GetSpacing() and back.GetDirection() == ref.GetDirection()
    else:  # NRRD stores direction x spacing; ITK's split into the two moves the last bit
        np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), rtol=1e-15, atol=0)
        np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), rtol=0, atol=1e-15)
    assert back.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)


def test_itk_and_nifti_describe_the_same_world(tmp_path: Path) -> None:
    """An .mha read by us and written as NIfTI is where SimpleITK's own NIfTI writer puts it."""
    array = _volume()
    src = tmp_path / "case.mha"
    sitk.WriteImage(_itk_image(array), str(src))
    _, geometry = read_image(src)
    write_labels(tmp_path / "pred.nii.gz", (array > 100).astype(np.uint8), geometry)
    ours = nib.load(str(tmp_path / "pred.nii.gz"))
    sitk.WriteImage(_itk_image(array), str(tmp_path / "ref.nii.gz"))
    ref = nib.load(str(tmp_path / "ref.nii.gz"))
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(ours.header.get_zooms(), ref.header.get_zooms(), rtol=1e-6)
    back = sitk.ReadImage(str(tmp_path / "pred.nii.gz"))
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN, atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), _direction(), atol=1e-5)


def test_nifti_geometry_to_itk_and_back(tmp_path: Path) -> None:
    """A NIfTI input written as .nrrd keeps its affine (the conversion in both directions is the same)."""
    affine = np.eye(4)  # oblique (rotated, flipped) but orthogonal: a sheared grid is refused (issue 26)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(_direction()).reshape(3, 3) @ np.diag([1.2, 0.8, 3.0])
    affine[:3, 3] = (10.0, 3.0, -5.0)
    data = _volume().transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "case.nii.gz"))
    image, geometry = read_image(tmp_path / "case.nii.gz")
    write_labels(tmp_path / "pred.nrrd", (image[0] > 100).astype(np.uint8), geometry)
    _, back = read_image(tmp_path / "pred.nrrd")
    np.testing.assert_allclose(back.affine, geometry.affine, atol=1e-6)
    np.testing.assert_allclose(affine_from_itk(itk_geometry(geometry)), geometry.affine, atol=1e-12)


def test_nifti_round_trip_is_unchanged(tmp_path: Path) -> None:
    affine = np.diag([1.5, 1.5, 10.0, 1.0])
    data = _volume().transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "case.nii.gz"))
    image, geometry = read_image(tmp_path / "case.nii.gz")
    assert image.shape == (1, 7, 11, 9) and geometry.header is not None
    write_labels(tmp_path / "pred.nii.gz", np.zeros(geometry.shape, np.uint8), geometry)
    out = nib.load(str(tmp_path / "pred.nii.gz"))
    np.testing.assert_array_equal(out.affine, affine)
    assert out.shape == data.shape


def test_vector_pixel_image_gives_channels(tmp_path: Path) -> None:
    a, b = _volume(), _volume() * 2
    img = sitk.Compose(_itk_image(a), _itk_image(b))
    sitk.WriteImage(img, str(tmp_path / "two.mha"))
    assert image_channels(tmp_path / "two.mha") == 2
    image, _ = read_image(tmp_path / "two.mha")
    np.testing.assert_array_equal(image, np.stack([a, b]))


def test_channel_files_in_mixed_formats_must_share_a_grid(tmp_path: Path) -> None:
    a = _volume()
    sitk.WriteImage(_itk_image(a), str(tmp_path / "c_0000.nrrd"))
    sitk.WriteImage(_itk_image(a * 2), str(tmp_path / "c_0001.mha"))
    image, _ = read_channels([tmp_path / "c_0000.nrrd", tmp_path / "c_0001.mha"])
    assert image.shape == (2, 7, 11, 9)
    moved = _itk_image(a)
    moved.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(tmp_path / "c_0001.mha"))
    with pytest.raises(DataError, match="geometry differs"):
        read_channels([tmp_path / "c_0000.nrrd", tmp_path / "c_0001.mha"])


def write_dicom_series(folder: Path, array: np.ndarray, direction=None, tags=None) -> "sitk.Image":
    """Write ``array`` (z, y, x, int16) as a DICOM series of one file per slice; returns the source image.
    ``tags``: {slice index: {tag: value}} replacing the written tags of those slices."""
    folder.mkdir(parents=True, exist_ok=True)
    img = _itk_image(array.astype(np.int16), direction)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = img.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125.1.42"
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in [
            ("0008|0060", "MR"), ("0020|000e", series), ("0020|000d", series + ".1"),
            ("0020|0037", "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
            ("0020|0032", "\\".join(f"{v:.10f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0013", str(k + 1)), ("0018|0050", f"{SPACING[2]:.10f}"),
            *(tags or {}).get(k, {}).items(),
        ]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    return img


def test_dicom_series_folder(tmp_path: Path) -> None:
    array = np.rint(_volume()).astype(np.int16)
    src = write_dicom_series(tmp_path / "series", array)
    assert is_dicom_folder(tmp_path / "series")
    image, geometry = read_image(tmp_path / "series")
    np.testing.assert_array_equal(image[0], array)
    itk = itk_geometry(geometry)
    np.testing.assert_allclose(itk.origin, src.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(itk.spacing, src.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(itk.direction, src.GetDirection(), atol=1e-6)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.nrrd").write_bytes(b"NRRD0004\ntype: float\ngarbage")
    with pytest.raises(DataError, match="broken.nrrd: cannot read image"):
        read_image(tmp_path / "broken.nrrd")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="unsupported image format"):
        read_image(tmp_path / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM series"):
        read_image(tmp_path / "empty")


def test_4d_nifti_is_channels(tmp_path: Path) -> None:
    data = np.stack([_volume().transpose(2, 1, 0), _volume().transpose(2, 1, 0) + 1], axis=-1)  # (x, y, z, c)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "mm.nii.gz"))
    assert image_channels(tmp_path / "mm.nii.gz") == 2
    image, geometry = read_image(tmp_path / "mm.nii.gz")
    assert image.shape == (2, 7, 11, 9) and geometry.shape == (7, 11, 9)
    np.testing.assert_allclose(image[1] - image[0], 1, atol=1e-4)


def test_find_cases_reads_nnunet_naming_in_any_format(tmp_path: Path) -> None:
    from lightmedseg.inference.inputs import InputError, find_cases

    for ch, ending in ((0, ".nrrd"), (1, ".mha")):
        sitk.WriteImage(_itk_image(_volume()), str(tmp_path / f"caseA_{ch:04d}{ending}"))
    cases, _ = find_cases(tmp_path, 2)
    assert [c.case_id for c in cases] == ["caseA"] and [f.name for f in cases[0].files] == ["caseA_0000.nrrd", "caseA_0001.mha"]
    with pytest.raises(InputError, match="missing channel file"):
        find_cases(tmp_path, 3)
    with pytest.raises(InputError, match="expected an image file ending in"):
        (tmp_path / "notes.txt").write_text("x")
        find_cases(tmp_path / "notes.txt", 1)


def test_header_shape_of_every_format(tmp_path: Path) -> None:
    from lightmedseg.data.readers import image_shape

    sitk.WriteImage(_itk_image(_volume()), str(tmp_path / "a.nrrd"))
    sitk.WriteImage(sitk.Compose(_itk_image(_volume()), _itk_image(_volume())), str(tmp_path / "v.mha"))
    nib.save(nib.Nifti1Image(np.zeros((9, 11, 7, 1), np.float32), np.eye(4)), str(tmp_path / "s.nii.gz"))
    write_dicom_series(tmp_path / "dcm", np.rint(_volume()).astype(np.int16))
    assert image_shape(tmp_path / "a.nrrd") == (9, 11, 7)
    assert image_shape(tmp_path / "v.mha") == (9, 11, 7, 2)
    assert image_shape(tmp_path / "s.nii.gz") == (9, 11, 7)
    assert image_shape(tmp_path / "dcm") == (9, 11, 7)
    (tmp_path / "bad.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n")
    with pytest.raises(DataError, match="bad.mha: cannot read the image header"):
        image_shape(tmp_path / "bad.mha")


# -- issue 26: a DICOM series is checked before use ---------------------------------------------------------

def _series(tmp_path: Path, **kwargs) -> Path:
    write_dicom_series(tmp_path / "series", np.rint(_volume()).astype(np.int16), **kwargs)
    return tmp_path / "series"


def test_dicom_missing_slices_are_refused(tmp_path: Path) -> None:
    series = _series(tmp_path)
    for k in (2, 3, 4):
        (series / f"slice{k:03d}.dcm").unlink()
    with pytest.raises(DataError, match=r"series: the DICOM series is not one regular 3D volume: uneven slice "
                                        r"spacing: steps of 3.1 mm, but 12.4 mm .*about 3 missing slice"):
        read_image(series)


def test_dicom_duplicated_slice_is_refused(tmp_path: Path) -> None:
    series = _series(tmp_path, tags={6: {"0020|0032": "\\".join(f"{v:.10f}" for v in _itk_image(
        _volume()).TransformIndexToPhysicalPoint((0, 0, 5)))}})
    with pytest.raises(DataError, match=r"series: .*duplicated slice position.*slice005.dcm and slice006.dcm"):
        read_image(series)


@pytest.mark.parametrize("k", [0, 3])
def test_dicom_truncated_slice_is_named(tmp_path: Path, k: int) -> None:
    series = _series(tmp_path)
    f = series / f"slice{k:03d}.dcm"
    f.write_bytes(f.read_bytes()[: f.stat().st_size - 100])
    with pytest.raises(DataError, match=rf"series: .*slice{k:03d}.dcm: unreadable or truncated slice"):
        read_image(series)


def test_dicom_orientation_invalid_or_inconsistent(tmp_path: Path) -> None:
    series = _series(tmp_path / "a", tags={k: {"0020|0037": "1\\0\\0\\0\\1\\0"} for k in range(7)})
    for f in series.iterdir():  # GDCM refuses to write parallel rows and columns: patch them in
        data = f.read_bytes()
        assert data.count(b"1\\0\\0\\0\\1\\0") == 1
        f.write_bytes(data.replace(b"1\\0\\0\\0\\1\\0", b"1\\0\\0\\1\\0\\0"))
    with pytest.raises(DataError, match=r"slice000.dcm: invalid orientation .*orthogonal unit vectors"):
        read_image(series)
    series = _series(tmp_path / "b", tags={4: {"0020|0037": "1\\0\\0\\0\\1\\0"}})
    with pytest.raises(DataError, match=r"orientation differs between slices .*slice004.dcm"):
        read_image(series)


def test_dicom_slices_mixed_with_other_images_are_refused(tmp_path: Path) -> None:
    from lightmedseg.inference.inputs import InputError, find_cases

    series = _series(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((9, 11, 7), np.float32), np.eye(4)), str(series / "extra.nii.gz"))
    with pytest.raises(InputError, match=r"series: holds DICOM slices .* and other image files"):
        find_cases(series, 1)
