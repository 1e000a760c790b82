"""BraTS release folders -> canonical layout (modalities T1, T1ce, T2, FLAIR; canonical BraTS labels).

Detected per case folder (any depth below SRC; a folder holding NIfTI files is one case, its name is
the case ID):

* BraTS 2017-2021: ``{case}_t1/_t1ce/_t2/_flair/_seg.nii.gz`` -- labels 1/2/4 (kept as is).
* BraTS 2023: ``{case}-t1n/-t1c/-t2w/-t2f/-seg.nii.gz`` -- labels 1/2/3 (3 -> 4).
* BraTS 2013-2015 style (DeepMedic redistribution): ``Flair_*.nii.gz``, ``T1c_*.nii.gz``, ...,
  ``brainmask.nii.gz`` and ``OTMultiClass.nii.gz`` -- labels 1-4 (kept as is). Voxels outside the
  brain mask are set to 0, because these images were z-scored inside the brain and have a non-zero
  constant background that would defeat non-zero cropping and normalisation.

Every case must hold the same modalities (the union over all cases); a case without a label goes to
``imagesTs``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lightmedseg.data import labels as L
from lightmedseg.data.convert import nifti_files, stem, progress
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import geometry_difference, read_image_channels, read_label, read_volume
from lightmedseg.data.layout import DatasetWriter

ACCEPTS_SPACING = False

# File-name token -> role. Tokens are the lower-cased pieces of the name split at '_', '-' and '.'.
_TOKENS: dict[str, str] = {
    "t1": "T1", "t1n": "T1", "t1ce": "T1ce", "t1c": "T1ce", "t1gd": "T1ce",
    "t2": "T2", "t2w": "T2", "flair": "FLAIR", "t2f": "FLAIR",
    "seg": "label", "otmulticlass": "label", "ot": "label",
    "brainmask": "mask",
}
_RELEASE_2023 = {"t1n", "t1c", "t2w", "t2f"}


def _classify(folder: Path) -> tuple[dict[str, Path], str]:
    """Role -> file for one case folder, and the label scheme its names imply."""
    roles: dict[str, Path] = {}
    scheme = "brats2021"
    for f in nifti_files(folder):
        tokens = [t for t in re.split(r"[_\-.]", stem(f).lower()) if t]
        hits = {(_TOKENS[t], t) for t in tokens if t in _TOKENS}
        if not hits:
            continue
        if len({r for r, _ in hits}) > 1:
            raise DataError(f"{f}: file name matches several roles {sorted(r for r, _ in hits)}")
        (role, token), = sorted(hits)[:1]
        if role in roles:
            raise DataError(f"{folder}: two files for {role}: {roles[role].name} and {f.name}")
        roles[role] = f
        if token in _RELEASE_2023:
            scheme = "brats2023"
        if token in ("otmulticlass", "ot", "brainmask"):
            scheme = "brats2015"
    return roles, scheme


def _case_folders(src: Path) -> list[Path]:
    folders = sorted({p.parent for p in src.rglob("*.nii*") if not p.name.startswith(".")})
    if not folders:
        raise DataError(f"{src}: no NIfTI files found (expected BraTS case folders with *_t1.nii.gz ... files)")
    return folders


def convert_into(src: Path, out: Path, spacing=None) -> dict:
    cases = [(folder, *_classify(folder)) for folder in _case_folders(src)]
    cases = [c for c in cases if any(r in L.BRATS_MODALITIES for r in c[1])]
    if not cases:
        raise DataError(f"{src}: no BraTS modality files found (expected names with t1/t1ce/t2/flair or t1n/t1c/t2w/t2f)")
    schemes = {s for _, _, s in cases}
    if len(schemes) > 1:
        raise DataError(f"{src}: mixes BraTS releases with different label schemes {sorted(schemes)}; convert them separately")
    scheme = schemes.pop()
    present = {r for _, roles, _ in cases for r in roles}
    modalities = [m for m in L.BRATS_MODALITIES if m in present]
    writer = DatasetWriter(out, modalities, L.brats_labels_for(scheme), "brats")
    mapping = L.BRATS_SOURCE_MAPS[scheme]
    groups: dict[str, list[str]] = {}  # e.g. train/ and validation/ folders of the release
    for folder, roles, _ in progress(cases, "brats"):
        missing = [m for m in modalities if m not in roles]
        if missing:
            raise DataError(f"{folder}: missing modality {missing} (every case must have {modalities})")
        image, geom = read_image_channels([roles[m] for m in modalities])
        if "mask" in roles:
            mask, mgeom = read_volume(roles["mask"])
            if not mgeom.matches(geom):
                raise DataError(f"{roles['mask']}: brain mask geometry differs from the images ({geometry_difference(mgeom, geom)})")
            image = np.where(mask[None] > 0.5, image, 0.0).astype(np.float32)
        label = None
        if "label" in roles:
            raw, lgeom = read_label(roles["label"])
            if not lgeom.matches(geom):
                raise DataError(f"{roles['label']}: label geometry differs from the images ({roles[modalities[0]].name}: "
                                f"{geometry_difference(lgeom, geom)})")
            label = L.remap_values(raw, mapping, f"{roles['label']} ({scheme} labels)")
        group = folder.parent.relative_to(src).as_posix()
        if group != ".":
            groups.setdefault(group, []).append(folder.name)
        writer.write_case(folder.name, image, label, geom, "Tr" if label is not None else "Ts", str(folder))
    return writer.finish(
        f"BraTS ({scheme})", "brats", release_label_scheme=scheme,
        label_mapping={str(k): v for k, v in mapping.items()}, source_groups=groups,
        description=f"converted from {src.name}; modalities {modalities}; labels mapped from {scheme} to the canonical BraTS convention",
    )
