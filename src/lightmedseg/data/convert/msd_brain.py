"""MSD Task01_BrainTumour -> canonical layout.

Source: ``dataset.json`` (optional, its ``modality`` gives the channel order, default
FLAIR, T1w, t1gd, T2w), ``imagesTr/BRATS_NNN.nii.gz`` (4D: x, y, z, channel),
``labelsTr/BRATS_NNN.nii.gz`` (1 oedema, 2 non-enhancing tumour, 3 enhancing tumour),
``imagesTs/`` (unlabelled). Channels are reordered to T1, T1ce, T2, FLAIR and labels mapped to the
canonical BraTS values (1 -> 2, 2 -> 1, 3 -> 4). Hidden ``._*`` files of macOS archives are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightmedseg.data import labels as L
from lightmedseg.data.convert import nifti_files, stem, progress
from lightmedseg.data.errors import DataError
from lightmedseg.data.io import read_4d, read_label
from lightmedseg.data.layout import DatasetWriter

ACCEPTS_SPACING = False
MSD_DEFAULT_ORDER = ["FLAIR", "T1w", "t1gd", "T2w"]
_NAME_TO_CANONICAL = {"flair": "FLAIR", "t1w": "T1", "t1": "T1", "t1gd": "T1ce", "t1ce": "T1ce", "t2w": "T2", "t2": "T2"}


def _source_order(src: Path) -> list[str]:
    meta_file = src / "dataset.json"
    if not meta_file.is_file():
        return MSD_DEFAULT_ORDER
    try:
        meta = json.loads(meta_file.read_text())
        modality = meta["modality"]
        return [modality[k] for k in sorted(modality, key=int)]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{meta_file}: cannot read the MSD 'modality' entry ({exc})") from None


def convert_into(src: Path, out: Path, spacing=None) -> dict:
    order = _source_order(src)
    try:
        canonical = [_NAME_TO_CANONICAL[n.lower()] for n in order]
    except KeyError as exc:
        raise DataError(f"{src / 'dataset.json'}: unknown MSD modality {exc.args[0]!r}; expected {MSD_DEFAULT_ORDER}") from None
    modalities = [m for m in L.BRATS_MODALITIES if m in canonical]
    perm = [canonical.index(m) for m in modalities]
    writer = DatasetWriter(out, modalities, L.brats_labels_for("msd"), "brats")
    found = 0
    for subset in ("Tr", "Ts"):
        folder = src / f"images{subset}"
        if not folder.is_dir():
            if subset == "Tr":
                raise DataError(f"{src}: no imagesTr folder (expected the MSD Task01_BrainTumour layout)")
            continue
        for f in progress(nifti_files(folder), f"msd images{subset}"):
            image, geom = read_4d(f)
            if image.shape[0] != len(order):
                raise DataError(f"{f}: has {image.shape[0]} channels, expected {len(order)} ({order})")
            label = None
            label_file = src / f"labels{subset}" / f.name
            if label_file.is_file():
                raw, lgeom = read_label(label_file)
                if not lgeom.matches(geom):
                    raise DataError(f"{label_file}: label shape/affine {lgeom.shape} differs from its image {f} {geom.shape}")
                label = L.remap_values(raw, L.BRATS_SOURCE_MAPS["msd"], f"{label_file} (MSD labels)")
            elif subset == "Tr":
                raise DataError(f"{label_file}: label of training image {f.name} is missing")
            writer.write_case(stem(f), image[perm], label, geom, subset if label is not None else "Ts", str(f))
            found += 1
    if not found:
        raise DataError(f"{src / 'imagesTr'}: no NIfTI images found")
    return writer.finish("MSD BrainTumour", "msd-brain", release_label_scheme="msd",
                         label_mapping={str(k): v for k, v in L.BRATS_SOURCE_MAPS["msd"].items()},
                         description=f"converted from {src.name}; channels reordered from {order}")
