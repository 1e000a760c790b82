#!/usr/bin/env python
"""Predict and evaluate one split subset of a converted dataset with a trained model, in both modes.

Builds symlink folders holding only the chosen cases (the dataset itself is read in place, never
copied), runs ``lightmedseg predict`` and ``lightmedseg evaluate --mode strict`` and ``--mode nnformer``,
and leaves CSV / JSON / Markdown reports in OUT/eval_{mode}/.

Rerun, e.g.:
  python benchmarks/evaluate_run.py -m runs/acdc_lightmedseg --data /work/data/acdc \
      --split src/lightmedseg/splits/acdc_nnformer.json --subset validation --out runs/acdc_lightmedseg/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lightmedseg.cli.main import main as cli
from lightmedseg.data.layout import case_files
from lightmedseg.data.splits import read_split


def link_cases(data: Path, case_ids: list[str], images: Path, labels: Path) -> None:
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for case in case_ids:
        image_files, label_file = case_files(data, case)
        for f in image_files:
            (images / f.name).unlink(missing_ok=True)
            (images / f.name).symlink_to(f.resolve())
        if label_file is not None:
            (labels / label_file.name).unlink(missing_ok=True)
            (labels / label_file.name).symlink_to(label_file.resolve())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--split", required=True)
    p.add_argument("--subset", default="validation")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--method", default="LightMedSeg")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--keep-largest", action="store_true", help="predict --keep-largest (post-processing)")
    args = p.parse_args()

    split = read_split(args.split)
    known = {f.name[: -len(".nii.gz")] for f in (args.data / "labelsTr").glob("*.nii.gz")}
    cases = [c for c in split[args.subset] if c in known]
    if not cases:
        raise SystemExit(f"no case of subset {args.subset!r} of {args.split} is in {args.data}")
    images, labels = args.out / "images", args.out / "labels"
    link_cases(args.data, cases, images, labels)
    pred = args.out / "predictions"
    rc = cli(["predict", "-i", str(images), "-o", str(pred), "-m", args.model, "--quiet"]
             + (["--tta"] if args.tta else []) + (["--keep-largest"] if args.keep_largest else []))
    if rc:
        return rc
    for mode in ("strict", "nnformer"):
        rc = cli(["evaluate", "--pred", str(pred), "--ref", str(labels), "--labels", str(args.data / "dataset.json"),
                  "--mode", mode, "--out", str(args.out / f"eval_{mode}"), "--method", args.method, "--quiet"])
        if rc:
            return rc
    print(json.dumps({"cases": len(cases), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
