"""ACDC as downloaded -> canonical layout (one case per ED/ES frame, ID ``patientNNN_frameFF``).

Source: ``patientNNN/`` folders at any depth (``training/``, ``testing/``...) holding
``patientNNN_frameFF.nii.gz``, ``patientNNN_frameFF_gt.nii.gz`` and ``Info.cfg`` (``ED: 1``,
``ES: 12``, ``Group: DCM``...). The ED and ES frames named in Info.cfg are converted; the 4D cine
file is not used. Labels keep the ACDC values (1 RV, 2 Myo, 3 LV); phase and pathology group are
recorded in dataset.json under ``case_info``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lightmedseg.data import labels as L
from lightmedseg.data.acdc_info import INFO_CFG, read_info_cfg
from lightmedseg.data.convert import progress
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import geometry_difference, read_image_channels, read_label
from lightmedseg.data.layout import DatasetWriter

ACCEPTS_SPACING = False
_PATIENT = re.compile(r"^patient\d{3}$")
_ACDC_MAP = {v: v for v in L.ACDC_LABELS.values()}


def convert_into(src: Path, out: Path, spacing=None) -> dict:
    patients = sorted((p for p in src.rglob("patient*") if p.is_dir() and _PATIENT.match(p.name)),
                      key=lambda p: p.name)
    if not patients:
        raise DataError(f"{src}: no patientNNN folders found (expected the ACDC download layout)")
    writer = DatasetWriter(out, list(L.ACDC_MODALITIES), L.ACDC_LABELS, "acdc")
    case_info = {}
    for folder in progress(patients, "acdc"):
        cfg = folder / INFO_CFG
        if not cfg.is_file():
            raise DataError(f"{cfg}: missing (needed to find the ED and ES frames)")
        info = read_info_cfg(cfg)
        for phase in ("ED", "ES"):
            frame = f"{folder.name}_frame{int(info[phase]):02d}"
            image_file = folder / f"{frame}.nii.gz"
            if not image_file.is_file():
                raise DataError(f"{image_file}: missing {phase} frame named in {cfg}")
            image, geom = read_image_channels([image_file])
            label_file = folder / f"{frame}_gt.nii.gz"
            label = None
            if label_file.is_file():
                label, lgeom = read_label(label_file)
                if not lgeom.matches(geom):
                    raise DataError(f"{label_file}: label geometry differs from {image_file} ({geometry_difference(lgeom, geom)})")
                label = L.remap_values(label, _ACDC_MAP, f"{label_file} (ACDC labels)")
            writer.write_case(frame, image, label, geom, "Tr" if label is not None else "Ts", str(image_file))
            case_info[frame] = {"patient": folder.name, "phase": phase, "group": info.get("Group", "")}
    return writer.finish("ACDC", "acdc", case_info=case_info,
                         description=f"converted from {src.name}; ED and ES frames of each patient")
