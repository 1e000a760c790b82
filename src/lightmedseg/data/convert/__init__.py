"""Importers: one module per source format, each writing the canonical layout through a staging folder.

Every importer module exposes ``convert_into(src, out, spacing=None) -> dict`` (writes into the
empty staging folder ``out`` and returns the dataset.json contents) and ``ACCEPTS_SPACING``.
:func:`convert` adds the shared checks and the all-or-nothing output.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from lightmedseg.data.errors import DataError
from lightmedseg.data.layout import staged_output

FORMATS: dict[str, str] = {
    "brats": "BraTS 2021-2023 release folders or BraTS 2013-2015 style folders (detected)",
    "msd-brain": "Medical Segmentation Decathlon Task01_BrainTumour (4D images, labels 1/2/3)",
    "acdc": "ACDC as downloaded: patientNNN/patientNNN_frameFF.nii.gz, _gt, Info.cfg",
    "acdc-h5": "ACDC HDF5 volumes (WSL4MIS layout: patientNNN_frameFF.h5 with image/label)",
    "nnunet": "a dataset already in nnU-Net v2 raw layout (validated, then copied)",
}


def convert(fmt: str, src: str | os.PathLike, dst: str | os.PathLike,
            spacing: Sequence[float] | None = None, overwrite: bool = False) -> dict:
    """Convert ``src`` in format ``fmt`` into a canonical dataset at ``dst`` (all or nothing)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: input folder not found")
    if not src.is_dir():
        raise DataError(f"{src}: input must be a folder")
    if not any(p.is_file() for p in src.rglob("*")):
        raise DataError(f"{src}: input folder is empty (expected {FORMATS[fmt]})")
    module = importlib.import_module(f"lightmedseg.data.convert.{fmt.replace('-', '_')}")
    if spacing is not None:
        if not module.ACCEPTS_SPACING:
            raise DataError(f"--spacing applies only to formats without stored spacing (acdc-h5), not {fmt!r}")
        if len(spacing) != 3 or min(spacing) <= 0:
            raise DataError(f"--spacing needs three positive sizes Z Y X in mm, got {list(spacing)}")
    with staged_output(dst, overwrite=overwrite, src=src) as out:
        meta = module.convert_into(src, out, spacing=spacing)
    return meta


def progress(items: Sequence, desc: str) -> Iterable:
    """A tqdm progress bar on an interactive terminal, the plain items otherwise (tests, logs)."""
    return tqdm(items, desc=desc, unit="case", disable=not sys.stderr.isatty(), leave=False)


def nifti_files(folder: Path) -> list[Path]:
    """NIfTI files directly in ``folder``, sorted, skipping hidden files (e.g. macOS ``._`` copies)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.endswith((".nii.gz", ".nii")))


def stem(path: Path) -> str:
    """File name without .nii / .nii.gz."""
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
