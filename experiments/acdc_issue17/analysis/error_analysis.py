#!/usr/bin/env python
"""Where the ACDC model's errors come from (issue 17, session 6): three measurements on label maps.

1. Pose and size of each heart from its reference labels (each patient's first frame, end-diastole): the
   in-plane angle of the RV centroid seen from the LV centroid, and the equivalent diameter of the largest
   epicardial (LV + Myo) slice in voxels. Prints the training range and each validation patient: is a
   failing patient outside what training shows?
2. Boundary share of the errors: the fraction of wrongly labelled voxels of each class that lie within
   1.5 and 3 voxels (in-plane) of that class's reference boundary, on every folder pair given.
3. A resolution bound: the Dice of the reference itself after 2x in-plane average pooling of its one-hot
   map and bilinear upsampling (what a perfect half-resolution prediction upsampled naively would score).

Rerun (predictions from `lightmedseg predict -m acdc -i IMAGES -o PRED`; LABELS holds the references):
  python experiments/acdc_issue17/analysis/error_analysis.py --h5 ../shared/data/acdc-wsl4mis \
      --split src/lightmedseg/splits/acdc_nnformer.json --pairs PRED:LABELS [PRED2:LABELS2 ...]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from lightmedseg.evaluation.metrics import dice_score

CLASSES = {"RV": 1, "Myo": 2, "LV": 3}


def pose_and_size(h5_dir: Path) -> dict[str, tuple[float, float]]:
    """patient -> (RV-from-LV angle in degrees, largest epicardial slice's equivalent diameter in voxels)."""
    out: dict[str, tuple[float, float]] = {}
    for path in sorted(glob.glob(str(h5_dir / "patient*_frame*.h5"))):
        if Path(path).name[:10] in out:
            continue  # the first (lowest-numbered) frame only
        with h5py.File(path) as f:
            label = f["label"][:]  # (z, y, x)
        rv, lv = (np.argwhere(label == v)[:, 1:].mean(0) for v in (1, 3))
        angle = float(np.degrees(np.arctan2(*(rv - lv))))
        area = ((label == 2) | (label == 3)).sum((1, 2)).max()
        out[Path(path).name[:10]] = (angle, float(2 * np.sqrt(area / np.pi)))
    return out


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).astype(np.int64)


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """In-plane distance (voxels) of every voxel to the boundary of ``mask``, slice by slice (last axis = z)."""
    out = np.full(mask.shape, np.inf)
    for z in range(mask.shape[2]):
        s = mask[:, :, z]
        edge = s ^ ndi.binary_erosion(s)
        if edge.any():
            out[:, :, z] = ndi.distance_transform_edt(~edge)
    return out


def boundary_share(pred_dir: Path, label_dir: Path) -> dict[str, tuple[int, float, float]]:
    """class -> (wrong voxels, share within 1.5 voxels of the reference boundary, share within 3)."""
    totals = {c: [0, 0, 0] for c in CLASSES}
    for ref_file in sorted(label_dir.glob("*.nii.gz")):
        ref, pred = load(ref_file), load(pred_dir / ref_file.name)
        for c, v in CLASSES.items():
            wrong = (pred == v) ^ (ref == v)
            dist = boundary_distance(ref == v)
            totals[c][0] += int(wrong.sum())
            totals[c][1] += int((wrong & (dist <= 1.5)).sum())
            totals[c][2] += int((wrong & (dist <= 3)).sum())
    return {c: (n, a / max(n, 1), b / max(n, 1)) for c, (n, a, b) in totals.items()}


def half_resolution_bound(label_dir: Path) -> dict[str, float]:
    """Mean Dice of each class after 2x in-plane average pooling of the one-hot reference and bilinear upsampling."""
    scores: dict[str, list[float]] = {c: [] for c in CLASSES}
    for ref_file in sorted(label_dir.glob("*.nii.gz")):
        ref = torch.from_numpy(load(ref_file))  # (x, y, z)
        h, w = ref.shape[0] // 2 * 2, ref.shape[1] // 2 * 2
        ref = ref[:h, :w].permute(2, 0, 1)  # (z, x, y): slices as a batch
        onehot = F.one_hot(ref, 4).permute(0, 3, 1, 2).float()
        back = F.interpolate(F.avg_pool2d(onehot, 2), size=(h, w), mode="bilinear", align_corners=False).argmax(1)
        for c, v in CLASSES.items():
            scores[c].append(dice_score(back == v, ref == v, mode="nnformer"))
    return {c: 100 * float(np.mean(s)) for c, s in scores.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--h5", type=Path, required=True, help="the WSL4MIS ACDC folder (patientNNN_frameFF.h5)")
    p.add_argument("--split", required=True, help="split JSON with train/validation case IDs")
    p.add_argument("--pairs", nargs="+", default=[], help="PRED:LABELS folder pairs for the boundary share")
    args = p.parse_args()
    split = json.loads(Path(args.split).read_text())
    val = {c[:10] for c in split["validation"]}
    stats = pose_and_size(args.h5)
    train = [v for k, v in stats.items() if k not in val and any(c.startswith(k) for c in split["train"])]
    angles = np.array([a % 360 for a, _ in train])
    diam = np.array([d for _, d in train])
    print(f"1. training hearts ({len(train)} patients): RV angle {angles.min():.0f}..{angles.max():.0f} deg "
          f"(mod 360); epicardial diameter min {diam.min():.0f}, p10 {np.percentile(diam, 10):.0f}, median "
          f"{np.median(diam):.0f}, max {diam.max():.0f} voxels")
    for k in sorted(val):
        if k in stats:
            a, d = stats[k]
            print(f"   validation {k}: RV angle {a % 360:.0f} deg, epicardial diameter {d:.0f} voxels")
    for pair in args.pairs:
        pred, labels = (Path(x) for x in pair.split(":"))
        shares = boundary_share(pred, labels)
        print(f"2. {pred}: wrong voxels within 1.5 / 3 voxels of the reference boundary: " + "; ".join(
            f"{c} {n} ({a:.0%} / {b:.0%})" for c, (n, a, b) in shares.items()))
        bound = half_resolution_bound(labels)
        print(f"3. {labels}: half-resolution bound Dice " + ", ".join(f"{c} {v:.2f}" for c, v in bound.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
