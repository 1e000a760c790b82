"""Pack a canonical dataset into one small .tar.xz for a remote GPU machine (8-bit images, uncompressed .nii).

Why: a lent GPU machine receives at most 64 MiB with the repository; the ACDC dataset is 95 MB as
float32 .nii.gz. Images already scaled to [0, 1] (the ACDC HDF5 data) are stored as uint8 with
``scl_slope = 1/255`` (a quantisation step of 0.004 of the range, below the images' noise), labels
as they are; xz compresses the uncompressed .nii files better than gzip does. Readers apply the slope,
so the packed dataset loads as float images in [0, 1].

    python scripts/gpu/pack_dataset.py /work/data/acdc acdc_u8.tar.xz
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def pack(src: Path, out: Path) -> None:
    meta = json.loads((src / "dataset.json").read_text())
    ending = meta["file_ending"]
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / src.name
        for sub in ("imagesTr", "labelsTr"):
            (dst / sub).mkdir(parents=True)
            for f in sorted((src / sub).glob(f"*{ending}")):
                img = nib.load(str(f))
                data = np.asarray(img.dataobj, dtype=np.float32)
                if sub == "imagesTr":
                    if data.min() < 0 or data.max() > 1:
                        raise SystemExit(f"{f}: intensities outside [0, 1]; 8-bit packing would clip them")
                    out_img = nib.Nifti1Image(np.round(data * 255).astype(np.uint8), img.affine)
                    out_img.header.set_slope_inter(1 / 255.0, 0.0)
                else:
                    out_img = nib.Nifti1Image(data.astype(np.uint8), img.affine)
                out_img.header.set_zooms(img.header.get_zooms())
                nib.save(out_img, str(dst / sub / (f.name[: -len(ending)] + ".nii")))
        meta["file_ending"] = ".nii"
        meta["description"] = meta.get("description", "") + "; packed as 8-bit for a GPU run (scripts/gpu/pack_dataset.py)"
        (dst / "dataset.json").write_text(json.dumps(meta, indent=2))
        with tarfile.open(out, "w:xz", preset=9) as tar:
            tar.add(dst, arcname=src.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    pack(args.src, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB")
