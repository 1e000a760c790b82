#!/usr/bin/env python
"""Validation Dice of connected-component post-processing variants on one folder of raw predictions.

nnU-Net's rule: post-processing is chosen on validation, first "keep the largest component of the whole
foreground" (all classes as one object), then per class. Session 7 adds the contact rule
(``--require-contact``, :func:`remove_detached_components`): LV components that touch no myocardium
are dropped. Predict first without post-processing:
  lightmedseg predict -m MODEL -i IMAGES -o PRED --no-keep-largest --no-require-contact
  python experiments/acdc_issue17/postprocess/search_postprocess.py PRED LABELS
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from lightmedseg.evaluation.metrics import dice_score
from lightmedseg.inference.postprocess import keep_largest_component, remove_detached_components

CLASSES = {"RV": 1, "Myo": 2, "LV": 3}


def keep_largest_foreground(labels: np.ndarray) -> np.ndarray:
    """All foreground classes as one object: voxels outside its largest component become background."""
    kept = keep_largest_component((labels > 0).astype(np.int16), [1])
    return np.where(kept > 0, labels, 0)


def main() -> int:
    pred_dir, ref_dir = Path(sys.argv[1]), Path(sys.argv[2])
    variants = {
        "none": lambda x: x,
        "Myo": lambda x: keep_largest_component(x, [2]),
        "RV+Myo+LV": lambda x: keep_largest_component(x, [1, 2, 3]),
        "foreground": keep_largest_foreground,
        "foreground+Myo": lambda x: keep_largest_component(keep_largest_foreground(x), [2]),
        "foreground+RV+Myo+LV": lambda x: keep_largest_component(keep_largest_foreground(x), [1, 2, 3]),
        "RV+Myo": lambda x: keep_largest_component(x, [1, 2]),
        "LV~Myo": lambda x: remove_detached_components(x, 3, [2]),
        "RV+Myo, LV~Myo": lambda x: remove_detached_components(keep_largest_component(x, [1, 2]), 3, [2]),
        "RV+Myo, LV~Myo, RV~Myo|LV": lambda x: remove_detached_components(
            remove_detached_components(keep_largest_component(x, [1, 2]), 3, [2]), 1, [2, 3]),
    }
    scores = {name: {c: [] for c in CLASSES} for name in variants}
    for ref_file in sorted(ref_dir.glob("*.nii.gz")):
        ref = np.asarray(nib.load(ref_file).dataobj).astype(np.int16)
        raw = np.asarray(nib.load(pred_dir / ref_file.name).dataobj).astype(np.int16)
        for name, post in variants.items():
            out = post(raw)
            for c, v in CLASSES.items():
                scores[name][c].append(dice_score(out == v, ref == v, mode="nnformer"))  # both empty: 1
    print(f"{'variant':24s} {'RV':>6s} {'Myo':>6s} {'LV':>6s} {'mean':>6s}   ({len(scores['none']['RV'])} volumes)")
    for name, per in scores.items():
        means = {c: 100 * np.mean(v) for c, v in per.items()}
        print(f"{name:24s} " + " ".join(f"{means[c]:6.2f}" for c in CLASSES) + f" {np.mean(list(means.values())):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
