"""Is every file of a dataset complete? Checked when training opens the dataset, before any worker reads it.

A truncated ``.nii.gz`` (a copy that stopped, a full disk) fails only when its voxels are decompressed, deep
inside a data-loader worker, where the error used to end the run with a library traceback (or an abort).
:func:`check_complete` costs a header read and a few bytes per file: the gzip trailer records the stream's
uncompressed size, which must be the header's voxel offset plus the voxel bytes (only on a mismatch, e.g. a
multi-member gzip file, is the stream read to the end and its length compared: a complete stream of a file
cut before it was compressed is short too); an uncompressed ``.nii`` must be at least that long. Other formats
are checked by their header alone.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Iterable

from lightmedseg.data.errors import DataError


def _expected_nifti_bytes(path: Path) -> int:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for unreadable headers
        raise DataError(f"{path}: cannot read the NIfTI header ({type(exc).__name__}: {exc}); the file is "
                        "truncated or corrupt") from None
    header = img.header
    n = 1
    for s in img.shape:
        n *= int(s)
    offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))  # a loaded header may report 0
    return offset + n * header.get_data_dtype().itemsize


def _gzip_length(path: Path) -> int | None:
    """Uncompressed length of the whole gzip stream (every member), or None when it ends early or is corrupt."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return total


def check_complete(path: str | os.PathLike) -> None:
    """Raise DataError naming ``path`` when the file is shorter than its header says (truncated) or unreadable."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        expected = _expected_nifti_bytes(path)
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            recorded = struct.unpack("<I", fh.read(4))[0]
        if recorded != expected % 2**32:
            length = _gzip_length(path)
            if length is None:
                raise DataError(f"{path}: the compressed data ends early (the file is truncated or corrupt); "
                                "replace it, or leave the case out of the split")
            if length < expected:  # a complete stream of a file cut before it was compressed
                raise DataError(f"{path}: holds {length} bytes uncompressed but its header declares {expected} (the "
                                "file is truncated); replace it, or leave the case out of the split")
    elif name.endswith(".nii"):
        expected = _expected_nifti_bytes(path)
        size = path.stat().st_size
        if size < expected:
            raise DataError(f"{path}: holds {size} bytes but its header declares {expected} (the file is "
                            "truncated); replace it, or leave the case out of the split")
    else:
        from lightmedseg.data.readers import image_shape

        image_shape(path)  # the header at least


def check_cases_complete(files: Iterable[str | os.PathLike]) -> None:
    """:func:`check_complete` for every file; the first bad one is named."""
    for f in files:
        check_complete(f)


def check_split_complete(dataset_dir: str | os.PathLike, split: dict) -> None:
    """Every image and label of the training and validation cases of ``split`` is complete (:func:`check_complete`)."""
    from lightmedseg.data.layout import case_files

    for case_id in dict.fromkeys([*split.get("train", []), *split.get("validation", [])]):
        images, label = case_files(dataset_dir, case_id, "Tr")
        check_cases_complete([*images, *([label] if label is not None else [])])
