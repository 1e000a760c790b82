"""Find the cases to predict in INPUT: a case file, a folder in nnU-Net raw naming, or a dataset folder.

* a file ``{case}_{XXXX}.nii.gz`` -> that case with all its channel files from the same folder;
* any other image file -> one case: a 3D file is one channel, a 4D (x, y, z, c) file holds
  all channels (MSD style);
* a folder of ``{case}_{XXXX}.nii.gz`` files -> one case per ``{case}``; a folder where no file follows
  that naming is read as one single-channel case per file;
* a folder of DICOM files -> one case (the folder's single series), named after the folder;
* a dataset folder (``dataset.json`` + ``imagesTs``) -> the cases of ``imagesTs``.

Image files are NIfTI (``.nii.gz``, ``.nii``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``, ``.mhd``);
see :mod:`lightmedseg.data.readers`.

Every case must provide exactly the number of channels the model was trained with; a missing channel file
or a wrong count is reported before anything is predicted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lightmedseg.data.errors import DataError
from lightmedseg.data.io import load_header
from lightmedseg.data.readers import IMAGE_ENDINGS, NIFTI_ENDINGS, image_channels, image_ending, image_shape, is_dicom_folder, strip_ending
from lightmedseg.data.readers import dicom_files
from lightmedseg.inference.predictor import MIN_SPATIAL_SIZE

CHANNEL_RE = re.compile(
    r"^(?P<case>.+)_(?P<ch>\d{4})(?P<ext>" + "|".join(re.escape(e) for e in IMAGE_ENDINGS) + ")$", re.IGNORECASE
)


class InputError(DataError):
    """INPUT does not hold cases the model can read (missing/extra channel files, wrong kind of path)."""


@dataclass
class CaseInput:
    """One case to predict: its ID, its files in channel order, and whether the single file is 4D."""

    case_id: str
    files: list[Path]
    four_d: bool = False


def _strip(name: str) -> str | None:
    return strip_ending(name)


def _shape(path: Path) -> tuple[int, ...]:
    """Shape of an image from its header (trailing singleton axes dropped); refuses bad headers.

    NIfTI goes through :func:`load_header` (which also refuses non-finite affines and complex voxels);
    the formats read with SimpleITK (and DICOM folders) through :func:`image_shape`.
    """
    try:
        if path.is_file() and image_ending(path.name) in NIFTI_ENDINGS:
            shape = tuple(int(s) for s in load_header(path).shape)
        else:
            shape = tuple(int(s) for s in image_shape(path))
    except DataError as exc:
        raise InputError(str(exc)) from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_case(case: CaseInput) -> None:
    """Header-only pre-flight of one case: readable headers, finite affines, real voxels, 3D (or 4D with
    channels), at least 2 voxels on every axis, and one shape for all channel files.

    Run for every case before the first is predicted, so a bad file is named before anything is written.
    """
    ref_shape: tuple[int, ...] | None = None
    for f in case.files:
        shape = _shape(f)
        spatial = shape[:3]
        if len(shape) != (4 if case.four_d else 3):
            raise InputError(f"{f}: expected a {'4D (x, y, z, c)' if case.four_d else '3D'} volume, got shape {shape}")
        if min(spatial) < MIN_SPATIAL_SIZE:
            raise InputError(
                f"{f}: volume of size {spatial} (x, y, z) is too small: every axis needs at least "
                f"{MIN_SPATIAL_SIZE} voxels for this 3D model (a single slice is a 2D image)"
            )
        if ref_shape is not None and spatial != ref_shape:
            raise InputError(
                f"{f}: shape {spatial} (x, y, z) differs from {case.files[0]} {ref_shape}; "
                "all channel files of a case must share shape and affine"
            )
        ref_shape = spatial


def _unique_ids(folder: Path, pairs: list[tuple[str, Path]]) -> None:
    """Refuse two files that would give one case (or channel) ID, e.g. ``scan.nii`` and ``scan.nii.gz``."""
    seen: dict[str, Path] = {}
    for key, f in pairs:
        if key in seen:
            raise InputError(
                f"{folder}: {seen[key].name} and {f.name} give the same case {key!r}; both would be written to "
                "one output file - keep one of them"
            )
        seen[key] = f


def _channels(path: Path) -> int:
    try:
        return image_channels(path)
    except DataError as exc:
        raise InputError(str(exc)) from None


def _check_channels(case: str, found: dict[int, Path], folder: Path, ending: str, n: int) -> list[Path]:
    missing = [c for c in range(n) if c not in found]
    extra = sorted(c for c in found if c >= n)
    if missing:
        names = [f"{case}_{c:04d}{ending}" for c in missing]
        raise InputError(
            f"{folder}: case {case!r} is missing channel file(s) {names}; the model expects {n} channel(s) "
            f"({case}_0000{ending} ... {case}_{n - 1:04d}{ending})"
        )
    if extra:
        raise InputError(
            f"{folder}: case {case!r} has {len(found)} channel files ({sorted(found)}) but the model expects "
            f"{n} channel(s) (0000 ... {n - 1:04d}); wrong model or wrong input?"
        )
    return [found[c] for c in range(n)]


def _scan_channel_folder(folder: Path, n_channels: int) -> list[CaseInput]:
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and _strip(f.name) is not None]
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join('*' + e for e in IMAGE_ENDINGS)}) and no DICOM series found")
    named = {f: CHANNEL_RE.match(f.name) for f in files}
    if not any(named.values()):
        if n_channels != 1:
            raise InputError(
                f"{folder}: files are not in nnU-Net naming {{case}}_{{XXXX}}.nii.gz, which a {n_channels}-channel "
                "model needs (one file per channel: case_0000.nii.gz, case_0001.nii.gz, ...)"
            )
        _unique_ids(folder, [(_strip(f.name), f) for f in files])
        return [CaseInput(_strip(f.name), [f]) for f in files]
    stray = [f.name for f, m in named.items() if m is None]
    if stray:
        raise InputError(f"{folder}: files {stray[:5]} do not follow the nnU-Net naming {{case}}_{{XXXX}}.nii.gz of the others")
    _unique_ids(folder, [(f"{m['case']}_{m['ch']}", f) for f, m in named.items()])
    cases: dict[str, dict[int, Path]] = {}
    endings: dict[str, str] = {}
    for f, m in named.items():
        cases.setdefault(m["case"], {})[int(m["ch"])] = f
        endings[m["case"]] = m["ext"]
    return [CaseInput(c, _check_channels(c, ch, folder, endings[c], n_channels)) for c, ch in sorted(cases.items())]


def find_cases(input_path: str | os.PathLike, n_channels: int) -> tuple[list[CaseInput], Path]:
    """Cases in ``input_path`` for a model with ``n_channels`` inputs, each checked by :func:`check_case`;
    also returns the input folder.

    The folder is what outputs must never be written into (the file's folder for a file input); the real
    folders of the case files (symlinks resolved) are protected too, see ``pipeline.plan_outputs``.
    """
    cases, folder = _find(Path(input_path), n_channels)
    for case in cases:
        check_case(case)
    return cases, folder


def _find(path: Path, n_channels: int) -> tuple[list[CaseInput], Path]:
    if path.is_file():
        name = path.name
        if _strip(name) is None:
            raise InputError(f"{path}: expected an image file ending in {', '.join(IMAGE_ENDINGS)} (or a DICOM folder)")
        m = CHANNEL_RE.match(name)
        if m:
            matches = [(mm, f) for f in sorted(path.parent.iterdir())
                       if (mm := CHANNEL_RE.match(f.name)) and mm["case"] == m["case"]]
            _unique_ids(path.parent, [(f"{mm['case']}_{mm['ch']}", f) for mm, f in matches])
            siblings = {int(mm["ch"]): f for mm, f in matches}
            files = _check_channels(m["case"], siblings, path.parent, m["ext"], n_channels)
            return [CaseInput(m["case"], files)], path.parent
        channels = _channels(path)
        if channels > 1:
            if channels != n_channels:
                raise InputError(f"{path}: the file holds {channels} channels; the model expects {n_channels}")
            return [CaseInput(_strip(name), [path], four_d=True)], path.parent
        if n_channels != 1:
            raise InputError(
                f"{path}: a single 3D file is one channel, but the model expects {n_channels}; give "
                f"{_strip(name)}_0000.nii.gz ... or the folder holding all channel files"
            )
        return [CaseInput(_strip(name), [path])], path.parent
    if path.is_dir():
        if is_dicom_folder(path):
            if n_channels != 1:
                raise InputError(f"{path}: a DICOM series is one channel, but the model expects {n_channels}")
            return [CaseInput(path.name, [path])], path
        if mixed := dicom_files(path):
            raise InputError(f"{path}: holds DICOM slices ({mixed[0].name}{' ...' if len(mixed) > 1 else ''}) and "
                             "other image files; put the DICOM series in a folder of its own")
        if (path / "dataset.json").is_file():
            ts = path / "imagesTs"
            if not ts.is_dir():
                raise InputError(f"{path}: dataset folder without imagesTs; give imagesTr or a case folder explicitly")
            return _scan_channel_folder(ts, n_channels), path
        return _scan_channel_folder(path, n_channels), path
    raise InputError(f"{path}: input not found (expected an image file, a folder of case files, a DICOM folder or a dataset folder)")
