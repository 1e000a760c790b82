"""A dataset already in nnU-Net v2 raw layout: validate every file, then copy it unchanged.

Labels must be plain integers (region-based ``labels`` lists are not supported). A missing
``label_convention`` is set to ``generic`` (one region per label).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lightmedseg.data.io import default_file_mode
from lightmedseg.data.layout import validate_dataset, write_manifest
from lightmedseg.io_utils import write_json_atomic

ACCEPTS_SPACING = False


def convert_into(src: Path, out: Path, spacing=None) -> dict:
    meta = validate_dataset(src, read_data=True)
    ending = meta["file_ending"]
    copied = []
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        folder = src / sub
        if folder.is_dir():
            for f in sorted(folder.glob(f"*{ending}")):
                if not f.name.startswith("."):
                    (out / sub).mkdir(exist_ok=True)
                    shutil.copyfile(f, out / sub / f.name)
                    (out / sub / f.name).chmod(default_file_mode())
                    copied.append(out / sub / f.name)
    meta = {**meta, "label_convention": meta.get("label_convention", "generic")}
    meta.setdefault("source_format", "nnunet")
    write_json_atomic(out / "dataset.json", meta)
    (out / "dataset.json").chmod(default_file_mode())
    write_manifest(out, [*copied, out / "dataset.json"])  # what a later --overwrite may replace
    return meta
