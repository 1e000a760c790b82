#!/usr/bin/env python
"""Validation Dice of the shipped acdc model for every subset of test-time-augmentation views (issue 25, item 3).

Each validation volume is predicted once per view (the 8 in-plane symmetries of rot90 and the 4 slice-axis
mirror views that mirroring adds), with the card's model, backend and window; the per-view logits on the
preprocessed grid are kept in memory. A view set's prediction is the mean of its views' logits, which is what
the predictor computes (the sliding-window blend is linear), followed by the card's post-processing. So every
set below is scored from one pass per view instead of one prediction per set.
  python experiments/issue25_tta/score_views.py IMAGES LABELS OUT.csv      # IMAGES: {case}_0000.nii.gz
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from lightmedseg.data import labels as L
from lightmedseg.data.preprocess import preprocess_image, restore_to_original
from lightmedseg.evaluation.metrics import dice_score
from lightmedseg.inference import tta as T
from lightmedseg.inference.postprocess import postprocess_labels
from lightmedseg.inference.segment import Segmenter, read_input

CLASSES = {"RV": 1, "Myo": 2, "LV": 3}
ROT = T.views("rot90")  # k = 0..3 quarter turns, each without / with a mirror along W: index 2k + mirrored
MIRROR_D = [T.views("mirror")[i] for i, axes in enumerate([()] + T.mirror_axes_sets(), start=0) if 2 in axes]
VIEWS = {f"rot{90 * (i // 2)}{'_flipW' if i % 2 else ''}": v for i, v in enumerate(ROT)}
VIEWS.update({f"mirror_{''.join('DHW'[a - 2] for a in axes)}": T.views("mirror")[i + 1]
              for i, axes in enumerate(T.mirror_axes_sets()) if 2 in axes})
SETS = {  # name -> views; fixed before scoring (subgroups of the dihedral group, nnU-Net's mirror set)
    "1 (none)": ["rot0"],
    "2 rot180": ["rot0", "rot180"],
    "2 flipW": ["rot0", "rot0_flipW"],
    "4 rotations (C4)": ["rot0", "rot90", "rot180", "rot270"],
    "4 flips (H, W, HW)": ["rot0", "rot0_flipW", "rot180_flipW", "rot180"],
    "8 rot90 (card)": [f"rot{a}{m}" for a in (0, 90, 180, 270) for m in ("", "_flipW")],
    "8 mirror": ["rot0", "rot0_flipW", "rot180_flipW", "rot180", "mirror_D", "mirror_DH", "mirror_DW", "mirror_DHW"],
}


def main() -> int:
    images, labels, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    seg = Segmenter("acdc", "cpu")
    pred = seg.predictor
    rows = []
    for image in sorted(images.glob("*_0000.nii.gz")):
        case = image.name.replace("_0000.nii.gz", "")
        array, _ = read_input(str(image), pred.in_channels)
        pre, info = preprocess_image(array, pred.config["data"])
        logits = {}
        t0 = time.time()
        for name, (transform, inverse) in VIEWS.items():
            pred._window = lambda x, tr=transform, inv=inverse: inv(pred.forward_fn(tr(x)))
            logits[name] = pred.predict_logits(pre).float()
        ref = np.asarray(nib.load(labels / f"{case}.nii.gz").dataobj).transpose(2, 1, 0)
        for set_name, members in SETS.items():
            mean = sum(logits[m] for m in members) / len(members)
            idx = mean.argmax(dim=0).cpu().numpy().astype(np.int16)
            lab = L.indices_to_values(restore_to_original(idx, info, fill_value=0), pred.label_values)
            lab = postprocess_labels(np.asarray(lab, dtype=np.int16), seg.keep_largest, seg.require_contact)
            row = {"case": case, "views": set_name}
            row.update({c: 100 * dice_score(lab == v, ref == v, mode="strict") for c, v in CLASSES.items()})
            rows.append(row)
        print(f"{case}: {time.time() - t0:.1f} s for {len(VIEWS)} views", flush=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for set_name in SETS:
        sel = [r for r in rows if r["views"] == set_name]
        per = {c: np.mean([r[c] for r in sel]) for c in CLASSES}
        print(f"{set_name:24s} mean {np.mean(list(per.values())):.2f}  " + "  ".join(f"{c} {v:.2f}" for c, v in per.items()))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
